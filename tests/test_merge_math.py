"""engine.merge.maths against brute-force, element-by-element computations on tiny tensors."""
import math

import pytest
import torch

from engine.merge.maths import dare, imm_step, tensor_seed


def draws(seed: int, shape) -> torch.Tensor:
    """The uniform draws a generator seeded with `seed` gives first (the ones DARE compares to p)."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def brute_imm(base, prev, sft, alpha, p, scale, u):
    """theta element by element, in float64, from the formula as written."""
    out = []
    for b, q, s, r in zip(base.double().flatten().tolist(), prev.double().flatten().tolist(),
                          sft.double().flatten().tolist(), u.flatten().tolist()):
        kept = (s - q) / (1 - p) if r >= p else 0.0
        out.append(alpha * b + (1 - alpha) * (q + scale * kept))
    return torch.tensor(out, dtype=torch.float64).reshape(base.shape)


def test_dare_at_p0_returns_delta_itself():
    delta = torch.randn(5, 7)
    assert dare(delta, 0.0, gen(1)) is delta


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dare_matches_brute_force(p):
    delta = torch.randn(13, 11)
    u = draws(42, delta.shape)
    expected = [d / (1 - p) if r >= p else 0.0 for d, r in zip(delta.flatten().tolist(), u.flatten().tolist())]
    got = dare(delta, p, gen(42))
    torch.testing.assert_close(got.flatten(), torch.tensor(expected), rtol=1e-6, atol=0)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_dare_kept_fraction_within_statistical_bounds(p):
    n = 200_000
    kept = (dare(torch.ones(n), p, gen(7)) != 0).double().mean().item()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma, (kept, 1 - p, sigma)


def test_dare_mean_over_seeds_approaches_delta():
    p, seeds = 0.4, 800
    delta = torch.randn(2000)
    mean = sum(dare(delta, p, gen(s)) for s in range(seeds)) / seeds
    # Each element's mean is delta * K / (S (1 - p)), K ~ Binomial(S, 1 - p): std |delta| sqrt(p / ((1 - p) S)).
    std = delta.abs() * math.sqrt(p / ((1 - p) * seeds))
    assert ((mean - delta).abs() <= 6 * std + 1e-6).all()
    one_draw_error = (dare(delta, p, gen(0)) - delta).abs().mean()
    assert (mean - delta).abs().mean() < one_draw_error / 10


def test_dare_keeps_dtype_and_computes_in_fp32():
    delta = torch.randn(64, 64).bfloat16()
    got = dare(delta, 0.3, gen(3))
    assert got.dtype == torch.bfloat16
    expected = (delta.float() * (draws(3, delta.shape) >= 0.3) / 0.7).bfloat16()
    assert torch.equal(got, expected)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_imm_step_at_p0_is_the_linear_formula(alpha):
    base, prev, sft = torch.randn(3, 9, 8).unbind(0)
    got = imm_step(base, prev, sft, alpha, 0.0)
    expected = brute_imm(base, prev, sft, alpha, 0.0, 1.0, torch.ones(base.shape))
    torch.testing.assert_close(got.double(), expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("alpha,p,scale", [(0.5, 0.3, 1.0), (0.2, 0.7, 1.6), (0.9, 0.1, 0.25)])
def test_imm_step_matches_brute_force(alpha, p, scale):
    base, prev, sft = torch.randn(3, 17, 5).unbind(0)
    got = imm_step(base, prev, sft, alpha, p, scale, gen(11))
    expected = brute_imm(base, prev, sft, alpha, p, scale, draws(11, base.shape))
    torch.testing.assert_close(got.double(), expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_imm_step_output_in_sft_dtype_with_fp32_maths(dtype):
    base, prev, sft = (t.to(dtype) for t in torch.randn(3, 40, 30).unbind(0))
    got = imm_step(base, prev, sft, 0.4, 0.5, 1.0, gen(5))
    assert got.dtype == dtype
    exact = brute_imm(base, prev, sft, 0.4, 0.5, 1.0, draws(5, base.shape))
    # Rounded once from fp32 maths: at most one unit in the last place of `dtype` from the exact value.
    ulp = exact.abs().clamp_min(1e-3) * torch.finfo(dtype).eps
    assert ((got.double() - exact).abs() <= ulp).all()
    # Maths in the low dtype itself would be further off on some elements.
    low = (0.4 * base + 0.6 * (prev + dare(sft - prev, 0.5, gen(5)))).to(dtype)
    assert not torch.equal(low, got)


def test_tensor_seed_depends_on_seed_name_and_piece_only():
    a = tensor_seed(1, "model.layers.0.mlp.up_proj.weight")
    assert a == tensor_seed(1, "model.layers.0.mlp.up_proj.weight")
    others = {tensor_seed(2, "model.layers.0.mlp.up_proj.weight"), tensor_seed(1, "model.layers.1.mlp.up_proj.weight"),
              tensor_seed(1, "model.layers.0.mlp.up_proj.weight", 1)}
    assert a not in others and len(others) == 3
    assert 0 <= a < 2**63
