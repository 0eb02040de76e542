"""The fast decoder's Triton kernels (engine/models/triton_decode.py) against their PyTorch
references, each check run in a child process twice: by Triton's interpreter on the CPU
(TRITON_INTERPRET=1) and compiled on a GPU (marked gpu). Skipped where Triton is not installed,
as in CI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
# Triton 3.6's interpreter stops at the kernels' loops over bounds loaded from memory ("only
# 0-dimensional arrays can be converted to Python scalars"); 3.9's runs them. Compiled, both do.
interpreter_runs_them = pytest.mark.skipif(tuple(int(x) for x in triton.__version__.split(".")[:2]) < (3, 9),
                                           reason=f"Triton {triton.__version__}'s interpreter cannot run these kernels")
DEVICES = [pytest.param("cpu", marks=interpreter_runs_them), pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda])]
TESTS = Path(__file__).resolve().parent

ATTENTION = """
import json, sys, torch, torch.nn.functional as F
from engine.models.triton_decode import decode_attention
torch.set_default_device(sys.argv[1])
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
import json, sys, torch
from engine.models.triton_decode import sample_tokens
torch.manual_seed(0)
logits = (torch.randn(8) * 2).to(sys.argv[1])  # drawn on the CPU: the same distribution on every device
torch.set_default_device(sys.argv[1])
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
folder = qwen_gqa(Path(sys.argv[2]), init=0.2)
prompts, _ = arith_prompts(6)
runs = {}
for kernels in ("generate", "torch", "triton"):
    gen = HFGenerator(folder, sys.argv[1], torch.float32, fast=kernels != "generate")
    if gen.decoder is not None:
        gen.decoder.kernels = kernels
    runs[kernels] = gen.generate(prompts, 0.0, 1, 12)
    gen.close()
print(json.dumps(runs))
"""


def run_check(code: str, device: str, *args) -> object:
    """The check's JSON answer, from a child process on `device` (the CPU: Triton's interpreter)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    done = subprocess.run([sys.executable, "-c", code, device, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("device", DEVICES)
def test_split_k_attention_matches_sdpa_over_the_filled_slots_only(device):
    errors = run_check(ATTENTION, device)
    assert len(errors) == 4 and max(errors) < 1e-5, errors


@pytest.mark.parametrize("device", DEVICES)
def test_triton_sampling_draws_from_softmax_of_logits_over_temperature_and_follows_the_seed(device):
    got = run_check(SAMPLING, device)
    d = got["distance"]
    assert d["0.7"] < 0.06 and d["1.0"] > 0.1 and d["0.4"] > 0.1, d
    assert got["same_seed"]


@pytest.mark.parametrize("device", DEVICES)
def test_the_decoder_on_triton_kernels_gives_generates_greedy_output(device, tmp_path):
    runs = run_check(DECODER, device, tmp_path / "qwen")
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
