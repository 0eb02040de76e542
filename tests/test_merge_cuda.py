"""The CUDA merge path (fused Triton kernel, and torch ops on the GPU): skipped without a GPU."""
import math

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ALPHA, P = 0.3, 0.4


def tensors(n, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(n, generator=g, device="cuda").to(dtype) for _ in range(3)]


def outcomes(base, prev, sft, alpha, p, scale=1.0):
    """(value if sft's delta is dropped, value if kept), in float64."""
    b, q, s = (t.double() for t in (base, prev, sft))
    dropped = alpha * b + (1 - alpha) * q
    return dropped, dropped + (1 - alpha) * scale * (s - q) / (1 - p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_kernel_p0_is_the_linear_formula(dtype):
    from engine.merge.cuda_kernel import imm_step_fused

    base, prev, sft = tensors(100_003, dtype)
    out = imm_step_fused(torch.empty_like(sft), base, prev, sft, ALPHA, 0.0, 1.0, seed=1)
    exact = ALPHA * base.double() + (1 - ALPHA) * sft.double()
    if dtype == torch.float32:  # fp32 rounding of terms as large as the inputs
        torch.testing.assert_close(out.double(), exact, rtol=2e-6, atol=2e-6)
    else:  # rounded once to bf16: within one unit in the last place
        assert ((out.double() - exact).abs() <= exact.abs().clamp_min(1e-3) * torch.finfo(dtype).eps).all()


def test_fused_kernel_draws_an_exact_bernoulli_mask_with_1_over_1_minus_p():
    from engine.merge.cuda_kernel import imm_step_fused

    base, prev, sft = tensors(1_000_003, torch.float32)
    out = imm_step_fused(torch.empty_like(sft), base, prev, sft, ALPHA, P, 1.5, seed=7).double()
    dropped, kept = outcomes(base, prev, sft, ALPHA, P, 1.5)
    is_kept = (out - kept).abs() < (out - dropped).abs()
    assert torch.minimum((out - kept).abs(), (out - dropped).abs()).max() < 1e-5
    fraction = is_kept.double().mean().item()
    assert abs(fraction - (1 - P)) < 5 * math.sqrt(P * (1 - P) / out.numel())
    again = imm_step_fused(torch.empty_like(sft), base, prev, sft, ALPHA, P, 1.5, seed=7).double()
    other = imm_step_fused(torch.empty_like(sft), base, prev, sft, ALPHA, P, 1.5, seed=8).double()
    assert torch.equal(out, again) and not torch.equal(out, other)


@pytest.mark.parametrize("p", [0.3, 0.5, 1e-7, 0.999, 1 - 2**-24])
def test_fused_kernel_keeps_exactly_where_the_rand4x_uniform_is_at_least_p(p):
    """The kernel's integer threshold selects exactly the elements whose tl.rand4x draw is >= p."""
    import numpy as np
    import triton
    import triton.language as tl

    from engine.merge.cuda_kernel import BLOCK, imm_step_fused, keep_threshold

    @triton.jit
    def uniforms(out_ptr, seed, m, R: tl.constexpr):
        i = tl.program_id(0) * R + tl.arange(0, R)
        u0, u1, u2, u3 = tl.rand4x(seed, i.to(tl.uint32))
        inside = i < m
        tl.store(out_ptr + 4 * i, u0, mask=inside)
        tl.store(out_ptr + 4 * i + 1, u1, mask=inside)
        tl.store(out_ptr + 4 * i + 2, u2, mask=inside)
        tl.store(out_ptr + 4 * i + 3, u3, mask=inside)

    blocks, seed = 64, 12345
    n = blocks * BLOCK
    u = torch.empty(n // 4, 4, device="cuda")
    uniforms[(triton.cdiv(n // 4, 1024),)](u, seed, n // 4, R=1024)
    # element j of block b uses draw j // (BLOCK / 4) of counter b * BLOCK / 4 + j % (BLOCK / 4)
    u = u.view(blocks, BLOCK // 4, 4).transpose(1, 2).reshape(n)
    zero, one = torch.zeros(n, device="cuda"), torch.ones(n, device="cuda")
    out = imm_step_fused(torch.empty(n, device="cuda"), zero, zero, one, 0.0, p, 1.0, seed)
    assert torch.equal(out != 0, u >= np.float32(p).item())
    t = keep_threshold(p)
    scale = np.float32(4.6566127342e-10)
    assert np.float32(t) * scale >= np.float32(p) and (t == 0 or np.float32(t - 1) * scale < np.float32(p))


def test_fused_kernel_mean_over_seeds_approaches_the_undropped_step():
    from engine.merge.cuda_kernel import imm_step_fused

    base, prev, sft = tensors(4096, torch.float32)
    seeds = 2000
    mean = sum(imm_step_fused(torch.empty_like(sft), base, prev, sft, ALPHA, P, 1.0, seed=s).double()
               for s in range(seeds)) / seeds
    undropped = ALPHA * base.double() + (1 - ALPHA) * sft.double()
    std = (1 - ALPHA) * (sft - prev).double().abs() * math.sqrt(P / ((1 - P) * seeds))
    assert ((mean - undropped).abs() <= 6 * std + 1e-5).all()


def test_fused_kernel_in_pieces_equals_in_one_go():
    from engine.merge.cuda_kernel import BLOCK, imm_step_fused

    base, prev, sft = tensors(5 * BLOCK + 17, torch.bfloat16)
    whole = imm_step_fused(torch.empty_like(sft), base, prev, sft, ALPHA, P, 1.0, seed=3)
    cut = 2 * BLOCK
    first = imm_step_fused(torch.empty(cut, dtype=sft.dtype, device="cuda"), base[:cut], prev[:cut], sft[:cut],
                           ALPHA, P, 1.0, seed=3, offset=0)
    second = imm_step_fused(torch.empty(sft.numel() - cut, dtype=sft.dtype, device="cuda"), base[cut:], prev[cut:],
                            sft[cut:], ALPHA, P, 1.0, seed=3, offset=cut)
    assert torch.equal(whole, torch.cat([first, second]))


def test_resident_merge_equals_one_launch_per_tensor():
    from engine.merge.cuda_kernel import BLOCK, ResidentMerge, imm_step_fused

    sizes, dtypes = [17, BLOCK, 3 * BLOCK + 5, 896], [torch.bfloat16, torch.float32, torch.bfloat16, torch.float16]
    bases, prevs, sfts = ([t for n, d in zip(sizes, dtypes) for t in tensors(n, d, seed)[:1]] for seed in (1, 2, 3))
    outs = [torch.empty_like(s) for s in sfts]
    scales, seeds = [1.0, 2.0, 0.5, 1.5], [11, 2**40 + 3, 5, 7]
    resident = ResidentMerge(outs, bases, prevs, sfts)
    assert [g["align"] for g in resident.groups] == [8] * 3  # separate allocations: wide accesses
    for p in (P, 0.0):
        resident.run(ALPHA, p, scales, seeds)
        for o, b, q, s, scale, seed in zip(outs, bases, prevs, sfts, scales, seeds):
            assert torch.equal(o, imm_step_fused(torch.empty_like(s), b, q, s, ALPHA, p, scale, seed))


def test_resident_merge_on_unaligned_views_equals_one_launch_per_tensor():
    """Tensors at odd element offsets (no vector accesses) and aligned ones in one group; the result
    does not depend on alignment (it decides which accesses are vectorised, not the rounding)."""
    from engine.merge.cuda_kernel import BLOCK, ResidentMerge, imm_step_fused

    sizes = [2 * BLOCK + 3, BLOCK, 100]
    pools = [tensors(sum(sizes) + 8, torch.bfloat16, seed)[0] for seed in (1, 2, 3)]
    views = []
    for pool in pools:
        at, parts = 1, []
        for n in sizes:
            parts.append(pool[at:at + n])
            at += n
        views.append(parts)
    bases, prevs, sfts = views
    bases = [bases[0], torch.randn(sizes[1], device="cuda").bfloat16(), bases[2]]
    outs = [torch.empty_like(s) for s in sfts]
    resident = ResidentMerge(outs, bases, prevs, sfts)
    assert resident.groups[0]["align"] == 1
    resident.run(ALPHA, P, [1.0, 0.5, 2.0], [4, 5, 6])
    for o, b, q, s, scale, seed in zip(outs, bases, prevs, sfts, [1.0, 0.5, 2.0], [4, 5, 6]):
        single = imm_step_fused(torch.empty_like(s), b, q, s, ALPHA, P, scale, seed)
        assert torch.equal(o, single)
        aligned = imm_step_fused(torch.empty_like(s), b.clone(), q.clone(), s.clone(), ALPHA, P, scale, seed)
        assert torch.equal(single, aligned)


@pytest.mark.parametrize("fused", [True, False])
def test_merge_checkpoints_on_cuda(tmp_path, monkeypatch, fused):
    from transformers import AutoModelForCausalLM

    from engine.merge import stream as merge_stream
    from engine.merge.checkpoint import CheckpointReader
    from engine.merge.stream import merge_checkpoints
    from engine.models.tiny import new_tiny_model

    for i, role in enumerate(("base", "prev", "sft")):
        new_tiny_model(tmp_path / role, seed=i)
    if not fused:
        monkeypatch.setattr(merge_stream, "fused_kernel", lambda: None)
    folders = [tmp_path / r for r in ("base", "prev", "sft")]
    merge_checkpoints(*folders, tmp_path / "gpu", ALPHA, 0.0, 1, device="cuda")
    merge_checkpoints(*folders, tmp_path / "cpu", ALPHA, 0.0, 1, device="cpu")
    gpu, cpu = CheckpointReader(tmp_path / "gpu"), CheckpointReader(tmp_path / "cpu")
    for name in cpu.names():
        torch.testing.assert_close(gpu.get(name), cpu.get(name), rtol=3e-7, atol=1e-7)
    merge_checkpoints(*folders, tmp_path / "a", ALPHA, P, 1, device="cuda")
    merge_checkpoints(*folders, tmp_path / "b", ALPHA, P, 1, device="cuda")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
