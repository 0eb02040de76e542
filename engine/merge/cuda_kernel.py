"""The IMM step as one fused Triton kernel: each element is read once from base, prev and sft and
written once, with its DARE draw made in registers (Philox, counter = element index), so the step
runs at memory bandwidth. Same maths as `engine.merge.maths.imm_step_into`; its masks differ from the
CPU's (another generator) but, being counter-based, do not depend on how a tensor is cut in pieces.

The draw: element k keeps its delta when Triton's `tl.rand4x` uniform for it is >= p. The kernels
make the same decision on the raw 31-bit Philox value against an integer threshold computed once
on the host (`keep_threshold`), which selects exactly the same elements without the int-to-float
conversions.

Importing this module needs Triton (shipped with CUDA builds of torch).
"""
from __future__ import annotations

import functools
import struct

import torch
import triton
import triton.language as tl

BLOCK = 4096  # elements per program: 4 groups of BLOCK // 4, one Philox call per 4 elements
NUM_WARPS = 8
SEED_MASK = 2**31 - 1


def _f32(x: float) -> float:
    """x rounded to the nearest float32 (as a Python float)."""
    return struct.unpack("f", struct.pack("f", x))[0]


_UNIFORM_SCALE = _f32(4.6566127342e-10)  # tl.random.uint_to_uniform_float's, for 32-bit draws


@functools.lru_cache(maxsize=256)  # a binary search of ~25 us, on the per-launch path
def keep_threshold(p: float) -> int:
    """The least 31-bit value v with fp32(v) * scale >= fp32(p), the float comparison that
    `tl.rand4x(...) >= p` makes in the kernel (v is the draw x, or ~x when x < 0 as int32, as
    tl.random.uint_to_uniform_float maps it). Keeping v >= threshold keeps exactly those elements."""
    if not 0 <= p < 1 or _f32(p) >= 1:
        raise ValueError(f"drop rate {p} is not in [0, 1)")
    p32 = _f32(p)

    def uniform(v: int) -> float:  # fp32(v) * scale in fp32 (the double product is exact)
        return _f32(_f32(v) * _UNIFORM_SCALE)

    lo, hi = 0, 2**31 - 1  # uniform(2**31 - 1) is the largest float below 1, >= any p32 < 1
    while lo < hi:
        mid = (lo + hi) // 2
        if uniform(mid) >= p32:
            hi = mid
        else:
            lo = mid + 1
    return lo


@triton.jit
def _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, offs, n, x, threshold, wb, wp, c,
                 DROP: tl.constexpr, FULL: tl.constexpr):
    if FULL:
        b = tl.load(base_ptr + offs).to(tl.float32)
        q = tl.load(prev_ptr + offs).to(tl.float32)
        s = tl.load(sft_ptr + offs).to(tl.float32)
    else:
        inside = offs < n
        b = tl.load(base_ptr + offs, mask=inside).to(tl.float32)
        q = tl.load(prev_ptr + offs, mask=inside).to(tl.float32)
        s = tl.load(sft_ptr + offs, mask=inside).to(tl.float32)
    d = s - q
    if DROP:
        v = x.to(tl.int32, bitcast=True)
        v = v ^ (v >> 31)  # x, or -x - 1 when negative: the 31-bit value rand4x scales into [0, 1)
        d = tl.where(v >= threshold, d, 0.0)
    # explicit FMAs: left to the compiler, which products get fused depends on how the loads were
    # vectorised (so on pointer alignment), and the rounding with it
    y = tl.fma(c, d, tl.fma(wb, b, wp * q))
    if FULL:
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty))
    else:
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _merge_block(base_ptr, prev_ptr, sft_ptr, out_ptr, n, start, counter_start, seed, threshold, wb, wp, c,
                 BLOCK: tl.constexpr, DROP: tl.constexpr, FULL: tl.constexpr):
    """Elements start .. start + BLOCK of one tensor; element counter_start + k * QUARTER + i of the
    whole tensor uses draw k of Philox counter counter_start // 4 + i (tl.rand4x's stream)."""
    QUARTER: tl.constexpr = BLOCK // 4
    lane = tl.arange(0, QUARTER)
    if DROP:
        x0, x1, x2, x3 = tl.randint4x(seed, (counter_start // 4 + lane).to(tl.uint32))
    else:
        x0 = 0
        x1 = 0
        x2 = 0
        x3 = 0
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + lane, n, x0, threshold, wb, wp, c, DROP, FULL)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + QUARTER + lane, n, x1, threshold, wb, wp, c, DROP, FULL)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + 2 * QUARTER + lane, n, x2, threshold, wb, wp, c, DROP,
                 FULL)
    _merge_group(base_ptr, prev_ptr, sft_ptr, out_ptr, start + 3 * QUARTER + lane, n, x3, threshold, wb, wp, c, DROP,
                 FULL)


@triton.jit
def _merge_block_any(base_ptr, prev_ptr, sft_ptr, out_ptr, n, start, counter_start, seed, threshold, wb, wp, c,
                     BLOCK: tl.constexpr, DROP: tl.constexpr):
    """A full block without masks (so loads and stores can be vectorised), the last one masked."""
    if start + BLOCK <= n:
        _merge_block(base_ptr, prev_ptr, sft_ptr, out_ptr, n, start, counter_start, seed, threshold, wb, wp, c,
                     BLOCK, DROP, True)
    else:
        _merge_block(base_ptr, prev_ptr, sft_ptr, out_ptr, n, start, counter_start, seed, threshold, wb, wp, c,
                     BLOCK, DROP, False)


@triton.jit
def _imm_kernel(base_ptr, prev_ptr, sft_ptr, out_ptr, n, counter0, seed, threshold, wb, wp, c,
                BLOCK: tl.constexpr, DROP: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * BLOCK
    _merge_block_any(base_ptr, prev_ptr, sft_ptr, out_ptr, n, start, counter0 + start, seed, threshold, wb, wp, c,
                     BLOCK, DROP)


@triton.jit
def _imm_many_kernel(base_ptr, prev_ptr, sft_ptr, out_ptr, table_ptr, coef_ptr, seed_ptr, block_tensor_ptr,
                     block_start_ptr, threshold, wb, wp, BLOCK: tl.constexpr, DROP: tl.constexpr,
                     ALIGN: tl.constexpr):
    """One program per block of one of many tensors. The four pointers are those of the lowest
    addressed tensor of each role; table row t holds, per role, tensor t's offset from it in
    elements (>= 0), then its numel. Offsets rather than addresses, because Triton knows the
    alignment of pointer arguments but not of addresses read from memory. ALIGN (checked on the
    host) divides all offsets; `// ALIGN * ALIGN` tells Triton so, and full blocks get vector loads
    and stores (up to 128 bits, as wide as each thread's run of contiguous elements) instead of
    one per element."""
    pid = tl.program_id(0)
    t = tl.load(block_tensor_ptr + pid).to(tl.int64)
    start = tl.load(block_start_ptr + pid) // BLOCK * BLOCK  # a multiple of BLOCK: says so to Triton
    row = table_ptr + t * 5
    b_off = tl.load(row)
    q_off = tl.load(row + 1)
    s_off = tl.load(row + 2)
    o_off = tl.load(row + 3)
    if ALIGN > 1:
        b_off = b_off // ALIGN * ALIGN
        q_off = q_off // ALIGN * ALIGN
        s_off = s_off // ALIGN * ALIGN
        o_off = o_off // ALIGN * ALIGN
    _merge_block_any(base_ptr + b_off, prev_ptr + q_off, sft_ptr + s_off, out_ptr + o_off, tl.load(row + 4), start,
                     start, tl.load(seed_ptr + t), threshold, wb, wp, tl.load(coef_ptr + t), BLOCK, DROP)


def imm_step_fused(out: torch.Tensor, base: torch.Tensor, prev: torch.Tensor, sft: torch.Tensor,
                   alpha: float, p: float, scale: float, seed: int, offset: int = 0) -> torch.Tensor:
    """Write the IMM step into `out` (contiguous CUDA tensors of one shape; any float dtypes).

    `offset` is the index of out's first element within its whole tensor, so that a tensor merged
    in pieces draws the same mask as in one go (pieces must start at multiples of BLOCK)."""
    n = out.numel()
    grid = (triton.cdiv(n, BLOCK),)
    _imm_kernel[grid](base, prev, sft, out, n, offset, seed & SEED_MASK, keep_threshold(p), alpha, 1 - alpha,
                      coefficient(alpha, p, scale), BLOCK=BLOCK, DROP=p > 0, num_warps=NUM_WARPS)
    return out


def coefficient(alpha: float, p: float, scale: float) -> float:
    return (1 - alpha) * scale / (1 - p)



class ResidentMerge:
    """The IMM step over many tensors held in GPU memory, in one launch per dtype combination
    (instead of one launch per tensor, whose fixed cost dominates on a model's many small tensors).

    Built once for (outs, bases, prevs, sfts), run for each (alpha, p, scales, seeds): what a sweep
    re-merging one iteration's checkpoints calls. Each tensor gets exactly what imm_step_fused gives.
    run() enqueues its work without waiting for the GPU (seeds and coefficients go up from pinned
    memory), so that back-to-back runs keep the GPU busy.
    """

    def __init__(self, outs, bases, prevs, sfts, num_warps: int = NUM_WARPS):
        groups: dict[tuple, list[int]] = {}
        for i, tensors in enumerate(zip(bases, prevs, sfts, outs)):
            if not all(t.is_cuda and t.is_contiguous() and t.numel() == outs[i].numel() for t in tensors):
                raise ValueError("ResidentMerge needs contiguous CUDA tensors of one size per row")
            groups.setdefault(tuple(t.dtype for t in tensors), []).append(i)
        self.count = len(outs)
        self.num_warps = num_warps
        self.groups = []
        for dtypes, members in groups.items():
            anchors, offsets = [], []
            for role in (bases, prevs, sfts, outs):
                anchor = min((role[i] for i in members), key=lambda t: t.data_ptr())
                size = anchor.element_size()
                gaps = [role[i].data_ptr() - anchor.data_ptr() for i in members]
                if any(g % size for g in gaps):
                    raise ValueError("ResidentMerge needs tensors aligned to their element size")
                anchors.append(anchor)
                offsets.append([g // size for g in gaps])
            rows: list[list[int]] = []
            block_tensor: list[int] = []
            block_start: list[int] = []
            for row, i in enumerate(members):
                n = outs[i].numel()
                rows.append([offsets[r][row] for r in range(4)] + [n])
                blocks = triton.cdiv(n, BLOCK)
                block_tensor += [row] * blocks
                block_start += range(0, blocks * BLOCK, BLOCK)
            device = outs[members[0]].device
            self.groups.append({
                "members": members, "anchors": anchors,
                "align": next(a for a in (8, 4, 2, 1) if all(o % a == 0 for role in offsets for o in role)),
                "table": torch.tensor(rows, dtype=torch.int64, device=device),
                "block_tensor": torch.tensor(block_tensor, dtype=torch.int32, device=device),
                "block_start": torch.tensor(block_start, dtype=torch.int64, device=device),
                "seeds": torch.empty(len(members), dtype=torch.int64, device=device),
                "coef": torch.empty(len(members), dtype=torch.float32, device=device),
            })
        self._keep = (outs, bases, prevs, sfts)  # the table holds their offsets

    def run(self, alpha: float, p: float, scales, seeds) -> None:
        """scales and seeds: one per tensor, in the order given at construction."""
        threshold = keep_threshold(p)
        for g in self.groups:
            members = g["members"]
            # pinned sources: the copies are asynchronous, and torch's caching host allocator keeps
            # each source alive until its copy has run
            g["seeds"].copy_(torch.tensor([seeds[i] & SEED_MASK for i in members], dtype=torch.int64,
                                          pin_memory=True), non_blocking=True)
            g["coef"].copy_(torch.tensor([coefficient(alpha, p, scales[i]) for i in members], dtype=torch.float32,
                                         pin_memory=True), non_blocking=True)
            _imm_many_kernel[(g["block_tensor"].numel(),)](
                *g["anchors"], g["table"], g["coef"], g["seeds"], g["block_tensor"], g["block_start"], threshold,
                alpha, 1 - alpha, BLOCK=BLOCK, DROP=p > 0, ALIGN=g["align"], num_warps=self.num_warps)
