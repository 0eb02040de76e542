import math

import pytest

from engine.diagnostics.iimm import iimm_layer_scales, layer_scale_fn
from engine.diagnostics.layers import EMBEDDING, HEAD, LAYER_VECTOR, NORM, OTHER, Placement, place
from engine.diagnostics.verdict import average_ranks, spearman, top_quarter, verdict


def test_average_ranks_share_the_mean_of_tied_positions():
    assert average_ranks([3.0, 1.0, 3.0, 2.0, 3.0]) == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_spearman_with_ties_matches_hand_computation():
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4]; cov 4.5, var_x 4.5, var_y 5 -> 4.5 / sqrt(22.5)
    assert spearman([1, 2, 2, 3], [10, 30, 20, 40]) == pytest.approx(4.5 / math.sqrt(22.5), abs=1e-12)


def test_spearman_is_rank_based_and_signed():
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [5, 0.1, -3, -40]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_top_quarter_rounds_up_and_breaks_ties_by_lower_layer():
    assert top_quarter({0: 1.0, 1: 5.0, 2: 3.0, 3: 5.0, 4: 0.0}) == [1, 3]
    assert top_quarter({0: 2.0, 1: 2.0, 2: 1.0}) == [0]


def test_verdict_superficial_when_change_goes_to_unimportant_layers():
    importance = {0: 8.0, 1: 6.0, 2: 4.0, 3: 2.0, 4: 1.0, 5: 0.5, 6: 0.2, 7: 0.1}
    change = {n: float(n) for n in importance}
    v = verdict(importance, change)
    assert v.spearman == pytest.approx(-1.0)
    assert (v.label, v.top_importance, v.top_change, v.top_overlap) == ("superficial", [0, 1], [6, 7], [])
    aligned = verdict(importance, dict(importance))
    assert aligned.label == "aligned" and aligned.top_overlap == [0, 1]
    assert verdict({0: 1.0, 1: 1.0}, {0: 1.0, 1: 2.0}).label == "undefined"
    with pytest.raises(ValueError):
        verdict({0: 1.0}, {1: 1.0})


@pytest.mark.parametrize(
    "name, ndim, expected",
    [
        ("model.layers.3.self_attn.q_proj.weight", 2, Placement(3, "self_attn.q_proj", None)),
        ("model.layers.12.mlp.experts.7.down_proj.weight", 2, Placement(12, "mlp.experts.7.down_proj", None)),
        ("transformer.h.0.attn.c_attn.weight", 2, Placement(0, "attn.c_attn", None)),
        ("model.layers.3.input_layernorm.weight", 1, Placement(None, None, LAYER_VECTOR)),
        ("transformer.h.1.attn.c_attn.bias", 1, Placement(None, None, LAYER_VECTOR)),
        ("model.embed_tokens.weight", 2, Placement(None, None, EMBEDDING)),
        ("transformer.wte.weight", 2, Placement(None, None, EMBEDDING)),
        ("transformer.wpe.weight", 2, Placement(None, None, EMBEDDING)),
        ("lm_head.weight", 2, Placement(None, None, HEAD)),
        ("model.norm.weight", 1, Placement(None, None, NORM)),
        ("transformer.ln_f.weight", 1, Placement(None, None, NORM)),
        ("score.weight", 2, Placement(None, None, OTHER)),
    ],
)
def test_place_assigns_layers_modules_and_categories(name, ndim, expected):
    assert place(name, ndim) == expected


def test_iimm_scales_are_n_times_share_and_map_tensor_names():
    scales = iimm_layer_scales({0: 1.0, 1: 3.0, 2: 4.0, 3: 0.0})
    assert scales == pytest.approx({0: 0.5, 1: 1.5, 2: 2.0, 3: 0.0})
    scale = layer_scale_fn(scales)
    assert scale("model.layers.1.self_attn.q_proj.weight") == pytest.approx(1.5)
    assert scale("model.layers.2.input_layernorm.weight") == pytest.approx(2.0)
    assert scale("model.embed_tokens.weight") == 1.0 and scale("model.norm.weight") == 1.0
    with pytest.raises(KeyError, match="layer 9"):
        scale("model.layers.9.mlp.up_proj.weight")
    with pytest.raises(ValueError):
        iimm_layer_scales({0: 0.0, 1: 0.0})
