"""Triton kernels of the fast decoder's step on CUDA (engine/models/fast_generate.py), each with a
PyTorch reference there (SDPA, pick_tokens) that stays the fallback.

decode_attention: split-K attention of one new query per sequence over its filled cache slots
only. A program takes one (sequence, key/value head) and one split of the cache length: the query
heads of the group are its query rows (read the cache once for all of them), its slots run from
the sequence's first filled slot to the one written this step (empty splits return at once), with
an online softmax in fp32; the splits' partial outputs are merged by their log-sum-exp. SDPA
instead reads every slot of the static cache, padding and unwritten slots included, with the
group's few query rows in a kernel made for long query blocks (benchmarks/RESULTS.md).

sample_tokens: one draw per row from softmax(logits / T) by the Gumbel-max trick
(argmax(logits / T - log(-log U)), U uniform, a draw from that softmax) in one pass over the
model-dtype logits, with Triton's counter-based generator seeded from torch's global one (so a
caller's seed still fixes the draws): no fp32 copy, softmax, exponentials or divisions over the
151,936 columns. Its draws are not the PyTorch reference's, only of the same distribution.

Both run under Triton's interpreter on the CPU (TRITON_INTERPRET=1), which is how they were
checked against their references here (tests/test_fast_generate.py); not yet measured on a GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_N = 64  # cache slots per inner iteration
SAMPLE_BLOCK = 2048  # vocabulary columns per iteration of the sampling kernel


@triton.jit
def _split_attention(Q, K, V, First, Last, Acc, Lse, scale, chunk,
                     sqb, sqh, sqg, skb, skh, sks, svb, svh, svs,
                     H: tl.constexpr, G: tl.constexpr, D: tl.constexpr, G_PAD: tl.constexpr,
                     SPLITS: tl.constexpr, BLOCK: tl.constexpr, IEEE: tl.constexpr):
    bh = tl.program_id(0)
    split = tl.program_id(1)
    b = bh // H
    h = bh % H
    g = tl.arange(0, G_PAD)
    d = tl.arange(0, D)
    n = tl.arange(0, BLOCK)
    q = tl.load(Q + b * sqb + h * sqh + g[:, None] * sqg + d[None, :], mask=g[:, None] < G, other=0.0)
    lo = tl.maximum(tl.load(First + b), split * chunk)
    hi = tl.minimum(tl.load(Last) + 1, (split + 1) * chunk)
    m = tl.full([G_PAD], float("-inf"), tl.float32)
    total = tl.zeros([G_PAD], tl.float32)
    acc = tl.zeros([G_PAD, D], tl.float32)
    for start in range(lo, hi, BLOCK):
        slot = start + n
        valid = slot < hi
        k = tl.load(K + b * skb + h * skh + slot[:, None] * sks + d[None, :], mask=valid[:, None], other=0.0)
        v = tl.load(V + b * svb + h * svh + slot[:, None] * svs + d[None, :], mask=valid[:, None], other=0.0)
        if IEEE:
            x = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            x = tl.dot(q, tl.trans(k))
        x = tl.where(valid[None, :], x * scale, float("-inf"))
        m_new = tl.maximum(m, tl.max(x, 1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(x - m_new[:, None])
        total = total * alpha + tl.sum(p, 1)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new
    out = (b * H + h) * SPLITS + split
    seen = total > 0  # an empty split (all its slots before First or after Last) weighs nothing
    tl.store(Acc + out * G_PAD * D + g[:, None] * D + d[None, :], acc / tl.where(seen, total, 1.0)[:, None])
    tl.store(Lse + out * G_PAD + g, tl.where(seen, m + tl.log(tl.where(seen, total, 1.0)), float("-inf")))


def splits_for(sequences: int, kv_heads: int, cache_len: int) -> int:
    """Cache splits per (sequence, head): enough programs to fill the card about four times over,
    no split shorter than 256 slots."""
    programs = sequences * kv_heads
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count if torch.cuda.is_available() else 132
    return max(1, min(-(-4 * sms // programs), -(-cache_len // 256)))


def decode_attention(q, k_cache, v_cache, first, last, scale: float, splits: int):
    """softmax(q k^T * scale) v over slots first[b] .. last (inclusive) of each sequence b.
    q: (B, kv heads, group, head_dim); caches: (B, kv heads, slots, head_dim); first: (B,) and
    last: (1,) integer tensors on the device (updated in place between CUDA-graph replays)."""
    B, H, G, D = q.shape
    C = k_cache.shape[2]
    g_pad = max(16, triton.next_power_of_2(G))  # tl.dot wants 16 rows at least
    chunk = -(-C // (splits * BLOCK_N)) * BLOCK_N
    acc = torch.empty((B, H, splits, g_pad, D), dtype=torch.float32, device=q.device)
    lse = torch.empty((B, H, splits, g_pad), dtype=torch.float32, device=q.device)
    _split_attention[(B * H, splits)](
        q, k_cache, v_cache, first, last, acc, lse, scale, chunk,
        q.stride(0), q.stride(1), q.stride(2), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        H=H, G=G, D=D, G_PAD=g_pad, SPLITS=splits, BLOCK=BLOCK_N, IEEE=q.dtype == torch.float32)
    weights = torch.softmax(lse, 2)[..., None]  # every sequence has its new slot: some split is not empty
    return (weights * acc).sum(2)[:, :, :G].to(q.dtype)


@triton.jit
def _gumbel_argmax(Logits, Out, stride, vocab, inv_t, seed, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    best_col = tl.zeros([BLOCK], tl.int32)
    for start in range(0, vocab, BLOCK):
        col = start + cols
        ok = col < vocab
        x = tl.load(Logits + row * stride + col, mask=ok, other=0.0).to(tl.float32)
        u = tl.rand(seed, row * vocab + col)
        y = tl.where(ok, x * inv_t - tl.log(-tl.log(u)), float("-inf"))
        take = y > best
        best = tl.where(take, y, best)
        best_col = tl.where(take, col, best_col)
    top = tl.max(best, 0)
    tl.store(Out + row, tl.min(tl.where(best == top, best_col, vocab), 0).to(tl.int64))


def sample_tokens(logits, temperature: float):
    """One token per row of logits (B, vocab), drawn from softmax(logits / temperature)."""
    rows, vocab = logits.shape
    out = torch.empty(rows, dtype=torch.long, device=logits.device)
    seed = int(torch.randint(0, 2**31 - 1, ()))  # torch's global generator: a caller's seed fixes it
    _gumbel_argmax[(rows,)](logits, out, logits.stride(0), vocab, 1.0 / temperature, seed, BLOCK=SAMPLE_BLOCK)
    return out
