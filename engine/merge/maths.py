"""The maths of one IMM merge step, on tensors (files are `engine.merge.stream`'s business).

    theta = alpha * base + (1 - alpha) * (prev + scale * DARE_p(sft - prev))

DARE_p keeps each element with probability 1 - p (an exact Bernoulli draw, element by element) and
rescales the kept ones by exactly 1 / (1 - p), so that E[DARE_p(d)] = d. This is not mergekit's
`rescale`, which matches the L1 norm of the tensor instead. `scale` is 1 for IMM; IIMM passes the
tensor's layer factor N * I_n / sum(I). The maths runs in fp32; the result takes sft's dtype.
"""
from __future__ import annotations

import hashlib

import torch


def tensor_seed(seed: int, name: str, piece: int = 0) -> int:
    """The seed of the DARE mask of one tensor (or of one piece of it): a function of the merge
    seed, the tensor's name and the piece index only, so masks depend neither on shard layout nor
    on the order in which tensors and pieces are visited."""
    digest = hashlib.blake2b(f"{seed}\0{name}\0{piece}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # torch seeds must fit in a signed 64-bit int


def keep_mask_(u: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Fill the fp32 tensor `u` in place with a DARE keep mask: 1.0 with probability 1 - p, else 0.0.

    Each element is kept when its uniform draw in [0, 1) is >= p."""
    torch.rand(u.shape, generator=generator, out=u, device=u.device)
    return u.ge_(p)


def dare(delta: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE_p(delta): drop each element with probability p, rescale the kept ones by 1 / (1 - p).

    p = 0 returns `delta` itself. The result has delta's dtype (maths in fp32)."""
    if p == 0:
        return delta
    mask = keep_mask_(torch.empty(delta.shape, dtype=torch.float32, device=delta.device), p, generator)
    return (delta.float() * mask / (1 - p)).to(delta.dtype)


def imm_step_into(
    out: torch.Tensor,
    base: torch.Tensor,
    prev: torch.Tensor,
    sft: torch.Tensor,
    alpha: float,
    p: float,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    scratch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Write the IMM step into `out` (its dtype is the output's); returns `out`.

    All tensors have out's shape and device; inputs may be any float dtype. `scratch`, three flat
    fp32 tensors with at least out.numel() elements, saves the allocations when called in a loop.
    Computed as (1 - alpha) * prev + alpha * base + c * mask * (sft - prev) with
    c = (1 - alpha) * scale / (1 - p): the same value as the formula up to fp32 rounding, in a few
    in-place passes.
    """
    n = out.numel()
    if scratch is None:
        scratch = tuple(torch.empty(n, dtype=torch.float32, device=out.device) for _ in range(3))
    w, d, u = (s[:n].view(out.shape) for s in scratch)
    w.copy_(prev)
    torch.sub(sft, w, out=d)
    w.mul_(1 - alpha).add_(base, alpha=alpha)
    c = (1 - alpha) * scale / (1 - p)
    if p > 0:
        w.addcmul_(d, keep_mask_(u, p, generator), value=c)
    else:
        w.add_(d, alpha=c)
    return out.copy_(w)


def imm_step(
    base: torch.Tensor,
    prev: torch.Tensor,
    sft: torch.Tensor,
    alpha: float,
    p: float,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """theta = alpha * base + (1 - alpha) * (prev + scale * DARE_p(sft - prev)), in sft's dtype."""
    return imm_step_into(torch.empty_like(sft), base, prev, sft, alpha, p, scale, generator)
