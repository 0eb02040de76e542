"""The hf SFT loop's speed options on the CPU: gradient checkpointing leaves the tiny model's loss
curve as it is; bf16 weights with fp32 masters in the optimizer (sft.precision) follow the fp32
curve and keep updates that bf16 alone rounds away; sft.kernels picks liger-kernel only where it
can run and says so when it cannot. The liger kernels themselves need a GPU (pytest -m gpu)."""
from __future__ import annotations

import pytest
import torch

from engine.config import SFTConfig
from engine.errors import ConfigError
from engine.train.kernels import choose
from engine.train.textdata import encode_pairs
from test_sft_loss import pairs, tiny

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


class Curve:
    """A progress reporter that keeps each optimizer step's loss."""

    def __init__(self):
        self.losses = []

    def start(self, total, unit, restored=0):
        pass

    def update(self, step, loss=None, tokens=0):
        self.losses.append(loss)


def curve(device="cpu", seed=3, **options) -> tuple[list[float], torch.nn.Module]:
    from engine.train.sft import fit

    model, tokenizer = tiny(seed=seed)
    items = encode_pairs(tokenizer, pairs(32, seed), 64)
    cfg = SFTConfig(epochs=2, lr=3e-3, batch_size=4, grad_accum=2, warmup=0.1, **options)
    seen = Curve()
    fit(model.to(device), items, tokenizer.pad_token_id, cfg, device, 0, lambda _: None, seen)
    return seen.losses, model


def test_gradient_checkpointing_leaves_the_tiny_models_loss_curve_unchanged():
    plain, _ = curve()
    checkpointed, model = curve(grad_checkpointing=True)
    assert model.model.gradient_checkpointing and len(plain) == 8
    assert checkpointed == pytest.approx(plain, rel=1e-5)
    assert plain[-1] < 0.7 * plain[0]


def test_bf16_weights_with_fp32_masters_follow_the_fp32_loss_curve():
    fp32, _ = curve()
    bf16, model = curve(precision="bf16")
    assert len(bf16) == len(fp32) == 8
    assert bf16 == pytest.approx(fp32, rel=0.05) and bf16 != fp32  # bf16 noise, not the same run
    assert bf16[-1] < 0.7 * bf16[0]
    # the trained model is handed back in fp32, unhooked
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())


def test_updates_below_bf16_resolution_accumulate_in_the_master_copy():
    from engine.train.master_weights import master_adamw

    def steps(model, opt, n):
        for _ in range(n):
            model(torch.ones(2, 4, dtype=next(model.parameters()).dtype)).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    torch.manual_seed(0)
    plain = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        plain.weight.fill_(1.0)
    mastered = torch.nn.Linear(4, 4, bias=False)
    mastered.load_state_dict(plain.state_dict())
    # Adam moves each weight by about lr a step: 1e-3 is a quarter of bf16's step at 1.0 (2^-7 / 2)
    steps(plain.to(torch.bfloat16), torch.optim.AdamW(plain.parameters(), lr=1e-3, weight_decay=0), 40)
    opt = master_adamw(mastered, [{"params": list(mastered.parameters())}], lr=1e-3, weight_decay=0)
    assert mastered.weight.dtype == torch.bfloat16 and opt.masters[0].dtype == torch.float32
    steps(mastered, opt, 40)
    assert torch.equal(plain.weight, torch.ones_like(plain.weight))  # bf16 alone rounds every update away
    assert torch.allclose(opt.masters[0], torch.full((4, 4), 1 - 40e-3), atol=2e-4)
    assert torch.equal(mastered.weight, opt.masters[0].to(torch.bfloat16))
    opt.finish()
    assert mastered.weight.dtype == torch.float32 and torch.equal(mastered.weight, opt.masters[0])


def test_micro_batch_gradients_reach_the_master_copy_in_fp32_and_the_bf16_ones_are_freed():
    from engine.train.master_weights import master_adamw

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    opt = master_adamw(model, [{"params": list(model.parameters())}], lr=1e-3)
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    model(x).square().sum().backward()
    model(x).square().sum().backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(m.grad.dtype == torch.float32 for m in opt.masters)
    # the sum of two micro-batches' bf16 gradients, added in fp32
    model.zero_grad()
    with torch.no_grad():
        w = model.weight.float().requires_grad_()
        b = model.bias.float().requires_grad_()
    once = torch.autograd.grad((x.float() @ w.T + b).square().sum(), [w, b])
    assert torch.allclose(opt.masters[0].grad, 2 * once[0], rtol=2e-2) and torch.allclose(opt.masters[1].grad, 2 * once[1], rtol=2e-2)


@pytest.mark.parametrize("setting, device, model_type, installed, chosen", [
    ("auto", "cpu", "llama", True, "eager"),
    ("auto", "cuda", "llama", True, "liger"),
    ("auto", "cuda", "qwen2", False, "eager"),
    ("auto", "cuda", "gpt2", True, "eager"),
    ("eager", "cuda", "qwen2", True, "eager"),
    ("liger", "cuda", "qwen2", True, "liger"),
])
def test_kernels_auto_takes_liger_only_where_it_runs(setting, device, model_type, installed, chosen):
    assert choose(setting, device, model_type, installed) == chosen


@pytest.mark.bad_input
@pytest.mark.parametrize("device, model_type, installed, reason", [
    ("cpu", "llama", True, "runs on CUDA only (this SFT runs on cpu)"),
    ("cuda", "qwen2", False, "liger-kernel is not installed (pip install liger-kernel)"),
    ("cuda", "gpt2", True, "applied to llama and qwen2 models here (this model is 'gpt2')"),
])
def test_kernels_liger_where_it_cannot_run_is_an_error_naming_the_field(device, model_type, installed, reason):
    with pytest.raises(ConfigError) as exc:
        choose("liger", device, model_type, installed)
    assert str(exc.value).startswith("sft.kernels: got 'liger'; allowed: 'auto' or 'eager' here: ") and reason in str(exc.value)


@pytest.mark.bad_input
def test_fit_with_liger_kernels_on_the_cpu_refuses_before_training():
    from engine.train.sft import fit

    model, tokenizer = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="sft.kernels: got 'liger'"):
        fit(model, encode_pairs(tokenizer, pairs(8, 0), 96), tokenizer.pad_token_id, SFTConfig(kernels="liger"), "cpu", 0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.bad_input
@pytest.mark.parametrize("assignment, message", [
    ("sft.kernels=fused", "sft.kernels: got 'fused'; allowed: one of auto, liger, eager"),
    ("sft.precision=fp16", "sft.precision: got 'fp16'; allowed: one of fp32, bf16"),
    ("sft.kernels=liger", "sft.kernels: got 'liger'; allowed: 'auto' or 'eager' with device = 'cpu'"),
])
def test_bad_kernel_and_precision_settings_name_the_field(assignment, message):
    from conftest import TINY_PRESET
    from engine.config import resolve

    with pytest.raises(ConfigError) as exc:
        resolve(TINY_PRESET, ["device=cpu", assignment])
    assert str(exc.value).startswith(message)


def test_liger_patches_the_models_norms_and_rotary_and_restores_the_transformers_module_after():
    """The patching only (liger's kernels need a GPU; Triton's interpreter cannot run them)."""
    import importlib

    pytest.importorskip("liger_kernel")
    from engine.train.kernels import patched

    model, _ = tiny()
    modeling = importlib.import_module(type(model).__module__)
    before = dict(vars(modeling))
    with patched(model, "liger") as linear_ce:
        assert modeling.apply_rotary_pos_emb is not before["apply_rotary_pos_emb"]
        layer = model.model.layers[0]
        assert [m.forward.__qualname__ for m in (model.model.norm, layer.input_layernorm, layer.mlp)] == \
            ["LigerRMSNorm.forward", "LigerRMSNorm.forward", "LigerSwiGLUMLP.forward"] and linear_ce is not None
    assert vars(modeling).keys() == before.keys() and all(vars(modeling)[k] is v for k, v in before.items())
    with patched(model, "eager") as linear_ce:
        assert linear_ce is None


@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_liger_kernels_and_bf16_masters_follow_the_eager_fp32_loss_curve():
    pytest.importorskip("liger_kernel")
    eager, _ = curve("cuda", kernels="eager")
    for options in ({"kernels": "liger"}, {"kernels": "liger", "precision": "bf16"},
                    {"kernels": "liger", "precision": "bf16", "grad_checkpointing": True}):
        got, _ = curve("cuda", **options)
        assert got == pytest.approx(eager, rel=0.05), options
