import json

import pytest
import torch
from transformers import LlamaForCausalLM

from engine.diagnostics.data import load_pairs
from engine.diagnostics.importance import importance, importance_of_model
from engine.errors import UserError
from engine.train.textdata import collate, encode_pairs
from engine.models.tiny import new_tiny_model

PAIRS = [
    ("Q: 12+30\nA: ", "12+30=42. The answer is 42."),
    ("Q: 5+7+81\nA: ", "5+7=12. 12+81=93. The answer is 93."),
    ("Q: 1+1\nA: ", "The answer is 2."),
    ("Q: 40+41+42\nA: ", "40+41=81. 81+42=123. The answer is 123."),
    ("Q: 9+9\nA: ", "9+9=18."),
]
LAYERS = 3
REL = 1e-6  # HF's loss (the brute force) runs in float32 even for a float64 model


@pytest.fixture(scope="module")
def tied():
    model, tokenizer = new_tiny_model(None, seed=1, layers=LAYERS, hidden=32, heads=2)
    return model.double(), tokenizer


def untied_twin(model):
    """The same weights with the head as its own tensor (a copy of the embedding)."""
    config = model.config.__class__(**{**model.config.to_dict(), "tie_word_embeddings": False})
    twin = LlamaForCausalLM(config).double()
    state = dict(model.state_dict())
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    twin.load_state_dict(state)
    return twin


def brute_grads(model, tokenizer):
    """dL/dW per parameter, L = mean response-token loss over all pairs in one batch (HF's loss)."""
    ids, mask, labels = collate(encode_pairs(tokenizer, PAIRS, 64), tokenizer.pad_token_id)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    named = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, list(named.values()))
    return loss.item(), {name: g for name, g in zip(named, grads)}, named


def score(g, w):
    return (g * w).abs().sum().item()


def test_layer_and_module_importance_match_brute_force(tied):
    model, tokenizer = tied
    loss, grads, params = brute_grads(model, tokenizer)
    got = importance_of_model(model, encode_pairs(tokenizer, PAIRS, 64), batch_size=2, pad_id=tokenizer.pad_token_id)
    for n in range(LAYERS):
        prefix = f"model.layers.{n}."
        matrices = [k for k, p in params.items() if k.startswith(prefix) and p.ndim == 2]
        assert len(matrices) == 7
        assert got.layers[n] == pytest.approx(sum(score(grads[k], params[k]) for k in matrices), rel=REL)
        q = prefix + "self_attn.q_proj.weight"
        assert got.modules[n]["self_attn.q_proj"] == pytest.approx(score(grads[q], params[q]), rel=REL)
    assert got.loss == pytest.approx(loss, rel=REL)
    assert got.unassigned["norm"] == pytest.approx(score(grads["model.norm.weight"], params["model.norm.weight"]), rel=REL)
    assert len(got.unassigned_names["layer_vector"]) == 2 * LAYERS
    assert got.n_examples == len(PAIRS)
    assert all(p.grad is None for p in model.parameters())


def test_tied_embedding_gets_both_gradient_paths_and_untied_head_is_separate(tied):
    model, tokenizer = tied
    twin = untied_twin(model)
    _, grads, params = brute_grads(twin, tokenizer)
    emb, head = "model.embed_tokens.weight", "lm_head.weight"
    items = encode_pairs(tokenizer, PAIRS, 64)

    got_tied = importance_of_model(model, items, batch_size=3, pad_id=tokenizer.pad_token_id)
    assert got_tied.tied == {head: emb}
    assert "head" not in got_tied.unassigned
    assert got_tied.unassigned["embedding"] == pytest.approx(score(grads[emb] + grads[head], params[emb]), rel=REL)

    got_untied = importance_of_model(twin, items, batch_size=3, pad_id=tokenizer.pad_token_id)
    assert got_untied.tied == {}
    assert got_untied.unassigned["embedding"] == pytest.approx(score(grads[emb], params[emb]), rel=REL)
    assert got_untied.unassigned["head"] == pytest.approx(score(grads[head], params[head]), rel=REL)
    assert got_untied.layers == pytest.approx(got_tied.layers, rel=REL)


def test_importance_from_folder_matches_in_memory(tmp_path, tied):
    model, tokenizer = new_tiny_model(tmp_path, seed=2, layers=2, hidden=32, heads=2)
    got = importance(tmp_path, PAIRS, batch_size=4, max_length=64, device="cpu")
    want = importance_of_model(model, encode_pairs(tokenizer, PAIRS, 64), 4, tokenizer.pad_token_id)
    assert got.layers == pytest.approx(want.layers, rel=1e-5)
    json.dumps(got.to_dict())


def test_no_response_token_within_max_length_is_a_user_error(tied):
    model, tokenizer = tied
    with pytest.raises(UserError, match="max_length"):
        importance_of_model(model, encode_pairs(tokenizer, PAIRS, 4), 2, tokenizer.pad_token_id)


def test_load_pairs_from_task_split_and_jsonl(tmp_path):
    pairs = load_pairs("arith_add3:test", limit=3)
    assert len(pairs) == 3 and pairs[0][0].endswith("A: ") and "The answer is" in pairs[0][1]
    path = tmp_path / "set.jsonl"
    path.write_text('{"prompt": "p1", "response": "r1"}\n\n{"question": "q2", "answer": "a2", "x": 1}\n')
    assert load_pairs(str(path)) == [("p1", "r1"), ("q2", "a2")]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ('{"prompt": "p"}\n', r"record 1 has fields \['prompt'\]; allowed: 'prompt' and 'response'"),
        ("not json\n", ":1: not valid JSON"),
        ("\n", "no records"),
    ],
)
def test_load_pairs_rejects_bad_jsonl(tmp_path, content, message):
    path = tmp_path / "set.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_pairs(str(path))


def test_load_pairs_rejects_unknown_task_and_split():
    with pytest.raises(UserError, match="unknown task"):
        load_pairs("no_such_task")
    with pytest.raises(UserError, match="no split 'dev'"):
        load_pairs("arith_add3:dev")
