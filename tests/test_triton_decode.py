"""The fast decoder's Triton kernels (engine/models/triton_decode.py) against their PyTorch
references: run for real by Triton's interpreter on the CPU (a child process with
TRITON_INTERPRET=1; skipped where Triton is not installed, as in CI), and on a GPU (marked gpu)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
TESTS = Path(__file__).resolve().parent

ATTENTION = """
import json, torch, torch.nn.functional as F
from engine.models.triton_decode import decode_attention
torch.manual_seed(0)
errors = []
for B, H, G, C, splits, last in [(3, 2, 3, 300, 1, 237), (3, 2, 3, 300, 3, 237), (2, 1, 7, 128, 2, 60), (4, 2, 2, 512, 4, 511)]:
    q, kc, vc = torch.randn(B, H, G, 64), torch.randn(B, H, C, 64), torch.randn(B, H, C, 64)
    first = torch.randint(0, last, (B,))
    bias = torch.full((B, 1, 1, C), float("-inf"))
    for b in range(B):
        bias[b, ..., first[b] : last + 1] = 0
    got = decode_attention(q, kc, vc, first, torch.tensor([last]), 0.125, splits)
    want = F.scaled_dot_product_attention(q, kc, vc, attn_mask=bias, scale=0.125)
    errors.append(float((got - want).abs().max()))
print(json.dumps(errors))
"""

SAMPLING = """
import json, torch
from engine.models.triton_decode import sample_tokens
torch.manual_seed(0)
logits = torch.randn(8) * 2
rows = logits.expand(1000, -1).contiguous()
torch.manual_seed(5)
draws = sample_tokens(rows, 0.7)
torch.manual_seed(5)
again = sample_tokens(rows[:20], 0.7)
freq = torch.bincount(draws, minlength=8).double() / len(draws)
distance = {t: 0.5 * float((freq - torch.softmax(logits.double() / t, -1)).abs().sum()) for t in (0.7, 1.0, 0.4)}
print(json.dumps({"distance": distance, "same_seed": again.tolist() == draws[:20].tolist()}))
"""

DECODER = """
import json, sys, torch
from pathlib import Path
from engine.models.generation import HFGenerator
from test_fast_generate import arith_prompts, qwen_gqa
folder = qwen_gqa(Path(sys.argv[1]), init=0.2)
prompts, _ = arith_prompts(6)
runs = {}
for kernels in ("generate", "torch", "triton"):
    gen = HFGenerator(folder, "cpu", torch.float32, fast=kernels != "generate")
    if gen.decoder is not None:
        gen.decoder.kernels = kernels
    runs[kernels] = gen.generate(prompts, 0.0, 1, 12)
    gen.close()
print(json.dumps(runs))
"""


def interpret(code: str, *args) -> object:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_split_k_attention_matches_sdpa_over_the_filled_slots_only():
    errors = interpret(ATTENTION)
    assert len(errors) == 4 and max(errors) < 1e-5, errors


def test_triton_sampling_draws_from_softmax_of_logits_over_temperature_and_follows_the_seed():
    got = interpret(SAMPLING)
    d = got["distance"]
    assert d["0.7"] < 0.06 and d["1.0"] > 0.1 and d["0.4"] > 0.1, d
    assert got["same_seed"]


def test_the_decoder_on_triton_kernels_gives_generates_greedy_output(tmp_path):
    runs = interpret(DECODER, tmp_path / "qwen")
    assert runs["triton"] == runs["torch"] == runs["generate"]
    assert len({o[0] for o in runs["generate"]}) > 3


@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_split_k_attention_matches_sdpa_in_bf16():
    import torch.nn.functional as F

    from engine.models.triton_decode import decode_attention, splits_for

    torch.manual_seed(0)
    B, H, G, C, last = 192, 2, 7, 2048, 1700
    q, kc, vc = (torch.randn(B, H, n, 128, device="cuda", dtype=torch.bfloat16) for n in (G, C, C))
    first = torch.randint(0, 1500, (B,), device="cuda")
    bias = torch.where(torch.arange(C, device="cuda")[None] >= first[:, None], 0.0, float("-inf"))
    bias[:, last + 1 :] = float("-inf")
    want = F.scaled_dot_product_attention(q.float(), kc.float(), vc.float(), attn_mask=bias[:, None, None])
    got = decode_attention(q, kc, vc, first, torch.tensor([last], device="cuda"), 128**-0.5, splits_for(B, H, C))
    assert (got.float() - want).abs().max() < 2e-2
