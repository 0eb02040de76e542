import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.diagnostics.weight_change import frobenius_distance, weight_change
from engine.errors import UserError
from engine.models.tiny import new_tiny_model

LAYERS = 3


def perturbed_copy(model, folder, **save_kw):
    """Save `model` with layer n's tensors moved by noise of scale 0.01 * (n + 1); model is left unchanged."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            step = 0.01 * (int(name.split(".")[2]) + 1) if ".layers." in name else 0.005
            p.add_(torch.randn(p.shape, generator=gen) * step)
        model.save_pretrained(folder, **save_kw)
        model.load_state_dict(state)


def full_state(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Before: sharded (several files + index); after: one file."""
    root = tmp_path_factory.mktemp("wc")
    model, _ = new_tiny_model(None, seed=3, layers=LAYERS, hidden=32, heads=2)
    model.save_pretrained(root / "before", max_shard_size="20KB")
    perturbed_copy(model, root / "after")
    return root / "before", root / "after"


def test_fixture_before_is_sharded(pair):
    before, after = pair
    assert (before / "model.safetensors.index.json").exists() and len(list(before.glob("*.safetensors"))) > 2
    assert len(list(after.glob("*.safetensors"))) == 1


def test_layer_and_module_change_match_plain_norms(pair):
    before, after = pair
    a, b = full_state(before), full_state(after)
    got = weight_change(before, after)
    for n in range(LAYERS):
        matrices = [k for k in a if k.startswith(f"model.layers.{n}.") and a[k].ndim == 2]
        assert len(matrices) == 7
        assert got.layers[n] == pytest.approx(sum(torch.norm(a[k] - b[k]).item() for k in matrices), rel=1e-5)
        k = f"model.layers.{n}.mlp.down_proj.weight"
        assert got.modules[n]["mlp.down_proj"] == pytest.approx(torch.norm(a[k] - b[k]).item(), rel=1e-5)
    emb = "model.embed_tokens.weight"
    assert got.unassigned["embedding"] == pytest.approx(torch.norm(a[emb] - b[emb]).item(), rel=1e-5)
    assert sum(got.pct.values()) == pytest.approx(100.0)
    assert got.pct[2] / got.pct[0] == pytest.approx(got.layers[2] / got.layers[0])
    assert got.layers[0] < got.layers[1] < got.layers[2]
    assert got.only_in_before == got.only_in_after == []  # tied: no lm_head.weight in either
    json.dumps(got.to_dict())


def test_untied_head_only_on_one_side_is_reported(pair, tmp_path):
    before, _ = pair
    state = full_state(before)
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    save_file(state, tmp_path / "model.safetensors")
    got = weight_change(before, tmp_path)
    assert got.only_in_after == ["lm_head.weight"] and got.only_in_before == []
    assert got.layers == {n: 0.0 for n in range(LAYERS)}


def test_shape_mismatch_is_a_user_error(pair, tmp_path):
    before, _ = pair
    state = full_state(before)
    state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 3)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match=r"model.layers.0.mlp.up_proj.weight: shape \[96, 32\]"):
        weight_change(before, tmp_path)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_frobenius_distance_matches_torch_norm(dtype):
    a, b = torch.randn(50, 33).to(dtype), torch.randn(50, 33).to(dtype)
    want = torch.norm(a.double() - b.double()).item()
    assert frobenius_distance(a, b, chunk_elements=100) == pytest.approx(want, rel=1e-6)  # 3 rows a chunk
    row_want = torch.norm(a[0].double() - b[0].double()).item()
    assert frobenius_distance(a[0], b[0], chunk_elements=10) == pytest.approx(row_want, rel=1e-6)


def test_missing_checkpoint_is_a_user_error(pair, tmp_path):
    with pytest.raises(UserError, match="no safetensors"):
        weight_change(pair[0], tmp_path)
