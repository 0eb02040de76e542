"""A GGUF file as model.path: a real (tiny, random) Llama written as GGUF with the `gguf` package
the way llama.cpp's converter writes it (q/k rows permuted, byte-level BPE vocabulary, chat
template), converted once into a model folder of the home's cache, and run through the loop."""
from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import FAST, TINY_PRESET, imm

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
HEADS, KV_HEADS, LAYERS = 4, 2, 2


def llama_cpp_permute(w, n_head: int):
    """llama.cpp's reordering of q/k rows for its rotary layout (transformers undoes it on load)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, seed: int = 0):
    """A random 2-layer Llama saved as an F32 GGUF file at `path`; returns the model it holds."""
    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values()) + ["Ġt", "<|im_start|>", "<|im_end|>"]
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=256,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_embedding_length(32)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(64)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(["Ġ t"])
    w.add_token_types([1] * (len(tokens) - 2) + [3, 3])  # 3: control tokens
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 1)
    w.add_chat_template(CHAT_TEMPLATE)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for ours, theirs in [("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                             ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
                             ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm")]:
            w.add_tensor(f"blk.{i}.{theirs}.weight", sd[p + ours + ".weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", llama_cpp_permute(sd[p + "self_attn.q_proj.weight"], HEADS))
        w.add_tensor(f"blk.{i}.attn_k.weight", llama_cpp_permute(sd[p + "self_attn.k_proj.weight"], KV_HEADS))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    return path, write_tiny_gguf(path)


def test_gguf_converts_once_into_a_model_folder_with_its_tokenizer_and_chat_template(tiny_gguf, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.models.gguf import ensure_gguf, gguf_folder

    path, original = tiny_gguf
    said = []
    folder = ensure_gguf(tmp_path, path, log=said.append)
    assert folder == gguf_folder(tmp_path, path) and folder.parent == tmp_path / "models"
    assert len(said) == 1 and "converting" in said[0]
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert not list(folder.parent.glob(".*tmp-*"))  # published by one rename, nothing left over

    converted = AutoModelForCausalLM.from_pretrained(folder)
    mine = converted.state_dict()
    for name, tensor in original.state_dict().items():  # q/k permutation undone: the same weights
        assert torch.equal(tensor, mine[name]), name
    tok = AutoTokenizer.from_pretrained(folder)
    assert (tok.eos_token, tok.bos_token) == ("<|im_end|>", "<|im_start|>")
    chat = tok.apply_chat_template([{"role": "user", "content": "2+3"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\n2+3<|im_end|>\n<|im_start|>assistant\n"
    ids = tok("Sum: 12+30 to wörld", return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == "Sum: 12+30 to wörld"
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, original(ids).logits)

    # Cached: a second use does not convert again and leaves the folder as it was.
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    said.clear()
    assert ensure_gguf(tmp_path, path, log=said.append) == folder and said == []
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    # A changed file (new modification time) is a new cache entry.
    os.utime(path, ns=(stamp, stamp + 10**9))
    assert gguf_folder(tmp_path, path) != folder


def test_bad_gguf_paths_are_rejected_naming_the_field_and_nothing_is_written(tiny_gguf, tmp_path):
    from engine.config import resolve
    from engine.errors import ConfigError

    path, _ = tiny_gguf
    with pytest.raises(ConfigError, match=r"model\.path: got '.*missing\.gguf'; allowed: an existing GGUF file"):
        resolve(TINY_PRESET, [f"model.path={tmp_path / 'missing.gguf'}"])
    (tmp_path / "folder.gguf").mkdir()
    with pytest.raises(ConfigError, match=r"model\.path: .*an existing GGUF file"):
        resolve(TINY_PRESET, [f"model.path={tmp_path / 'folder.gguf'}"])
    with pytest.raises(ConfigError, match=r"teacher\.path: .*a model folder"):  # a teacher must be a folder
        resolve(TINY_PRESET, [f"teacher.path={path}"])
    assert resolve(TINY_PRESET, [f"model.path={path}"]).model.path == str(path.resolve())
    with pytest.MonkeyPatch.context() as mp:  # as on a machine without the gguf extra
        real_find_spec = importlib.util.find_spec
        mp.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real_find_spec(name, *a))
        with pytest.raises(ConfigError, match=r"model\.path: .*\(missing: accelerate; pip install -e '\.\[gguf\]'\)"):
            resolve(TINY_PRESET, [f"model.path={path}"])

    home = tmp_path / "home"
    proc = imm("run", str(TINY_PRESET), "--set", f"model.path={tmp_path / 'missing.gguf'}", home=home)
    assert proc.returncode == 2 and "model.path" in proc.stderr and "missing.gguf" in proc.stderr
    assert not home.exists()


@pytest.mark.slow
def test_a_gguf_model_runs_the_loop_converted_once_per_home(tiny_gguf, tmp_path):
    """Build converts the file; base eval, SFT (on the gold rationales: a random model's own
    samples would all be filtered out), merge and eval load the converted folder; a second run in
    the same home finds it cached."""
    from engine.models.gguf import gguf_folder

    path, _ = tiny_gguf
    home = tmp_path / "home"
    sets = [a for kv in FAST + [f"model.path={path}", "generation.source=gold", "tasks.eval_size=8"]
            for a in ("--set", kv)]
    first = imm("run", str(TINY_PRESET), *sets, home=home, check=True)
    second = imm("run", str(TINY_PRESET), *sets, home=home, check=True)
    folder = gguf_folder(home, path)
    with sqlite3.connect(home / "imm.db") as db:
        runs = [r for (r,) in db.execute("SELECT id FROM runs ORDER BY created")]
        assert len(runs) == 2
        for run_id in runs:
            stages = db.execute("SELECT iteration, stage, status, artifact FROM stages WHERE run_id = ? ORDER BY ord",
                                [run_id]).fetchall()
            assert [(t, s) for t, s, _, _ in stages] == [
                (0, "build"), (0, "eval"), (1, "generate"), (1, "filter"), (1, "sft"), (1, "merge"), (1, "eval")]
            assert all(status == "done" for _, _, status, _ in stages)
            assert Path(stages[0][3]) == folder
            checkpoints = {c for (c,) in db.execute("SELECT DISTINCT checkpoint FROM metrics WHERE run_id = ?", [run_id])}
            assert checkpoints == {"base", "sft1", "merge1"}
    logs = [(home / "runs" / r / "engine.log").read_text() for r in runs]
    assert "converting" in logs[0] and "converting" not in logs[1]
    assert first.stdout.splitlines()[-3].split()[0] == "Base" and second.returncode == 0
