"""The IMM step as one fused Triton kernel: each element is read once from base, prev and sft and
written once, with its DARE draw made in registers (Philox, counter = element index), so the step
runs at memory bandwidth. Same maths as `engine.merge.imm_step_into`; its masks differ from the
CPU's (another generator) but, being counter-based, do not depend on how a tensor is cut in pieces.

Importing this module needs Triton (shipped with CUDA builds of torch).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096  # elements per program: 4 groups of BLOCK // 4, one Philox call per 4 elements


@triton.jit
def _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, offs, n, r, p, wb, wp, c, DROP: tl.constexpr):
    inside = offs < n
    b = tl.load(base_ptr + offs, mask=inside).to(tl.float32)
    q = tl.load(prev_ptr + offs, mask=inside).to(tl.float32)
    s = tl.load(sft_ptr + offs, mask=inside).to(tl.float32)
    d = s - q
    if DROP:
        d = tl.where(r >= p, d, 0.0)
    y = wp * q + wb * b + c * d
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _imm_kernel(base_ptr, prev_ptr, sft_ptr, out_ptr, n, counter0, seed, p, wb, wp, c,
                BLOCK: tl.constexpr, DROP: tl.constexpr):
    QUARTER: tl.constexpr = BLOCK // 4
    pid = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, QUARTER)
    start = pid * BLOCK
    # Element start + k * QUARTER + i uses draw k of Philox counter (counter0 + start) // 4 + i.
    counter = ((counter0 + start) // 4 + lane).to(tl.uint32)
    r0, r1, r2, r3 = tl.rand4x(seed, counter)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + lane, n, r0, p, wb, wp, c, DROP)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + QUARTER + lane, n, r1, p, wb, wp, c, DROP)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + 2 * QUARTER + lane, n, r2, p, wb, wp, c, DROP)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + 3 * QUARTER + lane, n, r3, p, wb, wp, c, DROP)


def imm_step_fused(out: torch.Tensor, base: torch.Tensor, prev: torch.Tensor, sft: torch.Tensor,
                   alpha: float, p: float, scale: float, seed: int, offset: int = 0) -> torch.Tensor:
    """Write the IMM step into `out` (contiguous CUDA tensors of one shape; any float dtypes).

    `offset` is the index of out's first element within its whole tensor, so that a tensor merged
    in pieces draws the same mask as in one go (pieces must start at multiples of BLOCK)."""
    n = out.numel()
    grid = (triton.cdiv(n, BLOCK),)
    _imm_kernel[grid](base, prev, sft, out, n, offset, seed & 0x7FFFFFFF, p, alpha, 1 - alpha,
                      (1 - alpha) * scale / (1 - p), BLOCK=BLOCK, DROP=p > 0, num_warps=8)
    return out
