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
NUM_WARPS = 8
SEED_MASK = 2**31 - 1


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
def _merge_block(base_ptr, prev_ptr, sft_ptr, out_ptr, n, start, counter_start, seed, p, wb, wp, c,
                 BLOCK: tl.constexpr, DROP: tl.constexpr):
    """Elements start .. start + BLOCK of one tensor; element counter_start + k * QUARTER + i of the
    whole tensor uses draw k of Philox counter counter_start // 4 + i."""
    QUARTER: tl.constexpr = BLOCK // 4
    lane = tl.arange(0, QUARTER)
    r0, r1, r2, r3 = tl.rand4x(seed, (counter_start // 4 + lane).to(tl.uint32))
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + lane, n, r0, p, wb, wp, c, DROP)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + QUARTER + lane, n, r1, p, wb, wp, c, DROP)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + 2 * QUARTER + lane, n, r2, p, wb, wp, c, DROP)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + 3 * QUARTER + lane, n, r3, p, wb, wp, c, DROP)


@triton.jit
def _imm_kernel(base_ptr, prev_ptr, sft_ptr, out_ptr, n, counter0, seed, p, wb, wp, c,
                BLOCK: tl.constexpr, DROP: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * BLOCK
    _merge_block(base_ptr, prev_ptr, sft_ptr, out_ptr, n, start, counter0 + start, seed, p, wb, wp, c, BLOCK, DROP)


@triton.jit
def _imm_many_kernel(table_ptr, coef_ptr, block_tensor_ptr, block_start_ptr, p, wb, wp,
                     B_TY: tl.constexpr, Q_TY: tl.constexpr, S_TY: tl.constexpr, O_TY: tl.constexpr,
                     BLOCK: tl.constexpr, DROP: tl.constexpr):
    """One program per block of one of many tensors; table row t: 4 addresses, numel, seed."""
    pid = tl.program_id(0)
    t = tl.load(block_tensor_ptr + pid).to(tl.int64)
    start = tl.load(block_start_ptr + pid)
    row = table_ptr + t * 6
    base_ptr = tl.load(row).to(tl.pointer_type(B_TY))
    prev_ptr = tl.load(row + 1).to(tl.pointer_type(Q_TY))
    sft_ptr = tl.load(row + 2).to(tl.pointer_type(S_TY))
    out_ptr = tl.load(row + 3).to(tl.pointer_type(O_TY))
    _merge_block(base_ptr, prev_ptr, sft_ptr, out_ptr, tl.load(row + 4), start, start, tl.load(row + 5), p, wb, wp,
                 tl.load(coef_ptr + t), BLOCK, DROP)


def imm_step_fused(out: torch.Tensor, base: torch.Tensor, prev: torch.Tensor, sft: torch.Tensor,
                   alpha: float, p: float, scale: float, seed: int, offset: int = 0) -> torch.Tensor:
    """Write the IMM step into `out` (contiguous CUDA tensors of one shape; any float dtypes).

    `offset` is the index of out's first element within its whole tensor, so that a tensor merged
    in pieces draws the same mask as in one go (pieces must start at multiples of BLOCK)."""
    n = out.numel()
    grid = (triton.cdiv(n, BLOCK),)
    _imm_kernel[grid](base, prev, sft, out, n, offset, seed & SEED_MASK, p, alpha, 1 - alpha,
                      coefficient(alpha, p, scale), BLOCK=BLOCK, DROP=p > 0, num_warps=NUM_WARPS)
    return out


def coefficient(alpha: float, p: float, scale: float) -> float:
    return (1 - alpha) * scale / (1 - p)


TRITON_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


class ResidentMerge:
    """The IMM step over many tensors held in GPU memory, in one launch per dtype combination
    (instead of one launch per tensor, whose fixed cost dominates on a model's many small tensors).

    Built once for (outs, bases, prevs, sfts), run for each (alpha, p, scales, seeds): what a sweep
    re-merging one iteration's checkpoints calls. Each tensor gets exactly what imm_step_fused gives.
    """

    def __init__(self, outs, bases, prevs, sfts):
        groups: dict[tuple, list[int]] = {}
        for i, tensors in enumerate(zip(bases, prevs, sfts, outs)):
            groups.setdefault(tuple(t.dtype for t in tensors), []).append(i)
        self.count = len(outs)
        self.groups = []
        for dtypes, members in groups.items():
            rows, block_tensor, block_start = [], [], []
            for row, i in enumerate(members):
                n = outs[i].numel()
                rows.append([bases[i].data_ptr(), prevs[i].data_ptr(), sfts[i].data_ptr(), outs[i].data_ptr(), n, 0])
                blocks = triton.cdiv(n, BLOCK)
                block_tensor += [row] * blocks
                block_start += range(0, blocks * BLOCK, BLOCK)
            device = outs[members[0]].device
            table = torch.tensor(rows, dtype=torch.int64, device=device)
            self.groups.append((members, [TRITON_DTYPES[d] for d in dtypes], table,
                                torch.tensor(block_tensor, dtype=torch.int32, device=device),
                                torch.tensor(block_start, dtype=torch.int64, device=device)))
        self._keep = (outs, bases, prevs, sfts)  # the table holds their addresses

    def run(self, alpha: float, p: float, scales, seeds) -> None:
        """scales and seeds: one per tensor, in the order given at construction."""
        for members, dtypes, table, block_tensor, block_start in self.groups:
            table[:, 5] = torch.tensor([seeds[i] & SEED_MASK for i in members], dtype=torch.int64)
            coef = torch.tensor([coefficient(alpha, p, scales[i]) for i in members], dtype=torch.float32,
                                device=table.device)
            _imm_many_kernel[(block_tensor.numel(),)](
                table, coef, block_tensor, block_start, p, alpha, 1 - alpha, *dtypes,
                BLOCK=BLOCK, DROP=p > 0, num_warps=NUM_WARPS)
