"""merge_checkpoints and `imm merge` on real tiny Llama checkpoints (tied embeddings) in tmp folders."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.merge import stream as merge_stream
from engine.merge.checkpoint import INDEX_NAME, CheckpointReader
from imm_tui.cli import main as cli_main
from engine.errors import UserError
from engine.merge.maths import imm_step, tensor_seed
from engine.merge.stream import HEAD, merge_checkpoints
from engine.models.tiny import new_tiny_model

from conftest import listing, nothing_written

PROJECT = Path(__file__).resolve().parent.parent
EMBED = "model.embed_tokens.weight"


def save(model, tokenizer, folder: Path, **kw) -> Path:
    model.save_pretrained(folder, **kw)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict:
    """base, prev and sft (fp32, one file each), their bf16 and sharded copies, and the models."""
    root = tmp_path_factory.mktemp("ckpts")
    out = {"models": {}}
    for i, role in enumerate(("base", "prev", "sft")):
        model, tok = new_tiny_model(seed=i)
        out["models"][role] = (model, tok)
        out[role] = save(model, tok, root / role)
        out[role + "_sharded"] = save(model, tok, root / (role + "_sharded"), max_shard_size="200KB")
        out[role + "_bf16"] = save(model.to(torch.bfloat16), tok, root / (role + "_bf16"))
        model.float()
    return out


def roles(ckpts, suffix=""):
    return [ckpts[r + suffix] for r in ("base", "prev", "sft")]


def expected(ckpts, name, alpha, p, seed, suffix="", scale=1.0, piece_size=None):
    """The IMM step of one tensor from engine.merge.imm_step, piece by piece as the stream seeds it."""
    base, prev, sft = (CheckpointReader(f).get(name) for f in roles(ckpts, suffix))
    size = piece_size or base.numel()
    pieces = []
    for i, start in enumerate(range(0, base.numel(), size)):
        b, q, s = (t.flatten()[start:start + size] for t in (base, prev, sft))
        g = torch.Generator().manual_seed(tensor_seed(seed, name, i))
        pieces.append(imm_step(b, q, s, alpha, p, scale, g))
    return torch.cat(pieces).reshape(base.shape)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def test_nothing_written_sees_leftover_temporary_folders_of_any_name(tmp_path):
    out = tmp_path / "m"
    before = listing(tmp_path)
    assert nothing_written(tmp_path, out, before)
    (tmp_path / f".m.tmp-{os.getpid()}").mkdir()
    assert not nothing_written(tmp_path, out, before)
    (tmp_path / f".m.tmp-{os.getpid()}").rmdir()
    (tmp_path / ".m.partial-7").mkdir()
    assert not nothing_written(tmp_path, out, before)


def test_p0_gives_the_linear_formula(ckpts, tmp_path):
    merge_checkpoints(*roles(ckpts), tmp_path / "m", alpha=0.3, drop_rate=0.0, seed=0)
    merged = CheckpointReader(tmp_path / "m")
    base, prev, sft = (CheckpointReader(f) for f in roles(ckpts))
    assert sorted(merged.names()) == sorted(sft.names())
    for name in merged.names():
        linear = 0.3 * base.get(name).double() + 0.7 * sft.get(name).double()  # prev + (sft - prev) = sft
        torch.testing.assert_close(merged.get(name).double(), linear, rtol=2e-6, atol=2e-6)


def test_dropped_merge_matches_imm_step_tensor_by_tensor(ckpts, tmp_path):
    merge_checkpoints(*roles(ckpts), tmp_path / "m", alpha=0.4, drop_rate=0.5, seed=3)
    merged = CheckpointReader(tmp_path / "m")
    for name in merged.names():
        assert torch.equal(merged.get(name), expected(ckpts, name, 0.4, 0.5, 3)), name


def test_pieces_are_seeded_by_index_whatever_the_threads(ckpts, tmp_path, monkeypatch):
    monkeypatch.setattr(merge_stream, "CPU_CHUNK", 1000)  # many pieces per tensor, two worker threads
    merge_checkpoints(*roles(ckpts), tmp_path / "m", alpha=0.4, drop_rate=0.5, seed=3)
    merged = CheckpointReader(tmp_path / "m")
    for name in (EMBED, "model.layers.2.mlp.down_proj.weight", "model.norm.weight"):
        assert torch.equal(merged.get(name), expected(ckpts, name, 0.4, 0.5, 3, piece_size=1000)), name
    monkeypatch.setattr(merge_stream.os, "sched_getaffinity", lambda _: {0})  # one thread, no pool
    merge_checkpoints(*roles(ckpts), tmp_path / "m1", alpha=0.4, drop_rate=0.5, seed=3)
    assert folder_bytes(tmp_path / "m") == folder_bytes(tmp_path / "m1")


def test_kept_fraction_is_one_minus_p(ckpts, tmp_path):
    merge_checkpoints(*roles(ckpts), tmp_path / "m", alpha=0.0, drop_rate=0.7, seed=1)
    prev, sft = CheckpointReader(ckpts["prev"]).get(EMBED), CheckpointReader(ckpts["sft"]).get(EMBED)
    got = CheckpointReader(tmp_path / "m").get(EMBED)
    dropped = (got - prev).abs() < (got - (prev + (sft - prev) / 0.3)).abs()
    n = got.numel()
    kept = 1 - dropped.double().mean().item()
    assert abs(kept - 0.3) < 5 * (0.3 * 0.7 / n) ** 0.5, kept


def test_same_seed_same_bytes_other_seed_other_bytes(ckpts, tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        merge_checkpoints(*roles(ckpts), tmp_path / name, alpha=0.5, drop_rate=0.3, seed=seed)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    assert folder_bytes(tmp_path / "a")["model.safetensors"] != folder_bytes(tmp_path / "c")["model.safetensors"]


def test_sharded_and_unsharded_inputs_give_the_same_output(ckpts, tmp_path):
    assert (ckpts["sft_sharded"] / INDEX_NAME).exists()
    merge_checkpoints(*roles(ckpts), tmp_path / "single", alpha=0.5, drop_rate=0.3, seed=9)
    mixed = [ckpts["base_sharded"], ckpts["prev"], ckpts["sft_sharded"]]
    merge_checkpoints(*mixed, tmp_path / "sharded", alpha=0.5, drop_rate=0.3, seed=9)
    assert folder_bytes(tmp_path / "single") == folder_bytes(tmp_path / "sharded")


def test_sharded_output_has_an_index_and_loads(ckpts, tmp_path):
    from transformers import AutoModelForCausalLM

    merge_checkpoints(*roles(ckpts), tmp_path / "one", alpha=0.5, drop_rate=0.3, seed=2)
    merge_checkpoints(*roles(ckpts), tmp_path / "many", alpha=0.5, drop_rate=0.3, seed=2, max_shard_bytes=300_000)
    index = json.loads((tmp_path / "many" / INDEX_NAME).read_text())
    assert len(set(index["weight_map"].values())) > 2
    one, many = (AutoModelForCausalLM.from_pretrained(tmp_path / n) for n in ("one", "many"))
    for (name, a), (_, b) in zip(one.state_dict().items(), many.state_dict().items()):
        assert torch.equal(a, b), name


def test_bf16_in_bf16_out(ckpts, tmp_path):
    merge_checkpoints(*roles(ckpts, "_bf16"), tmp_path / "m", alpha=0.5, drop_rate=0.3, seed=4)
    merged = CheckpointReader(tmp_path / "m")
    assert {merged.dtype(n) for n in merged.names()} == {"BF16"}
    assert torch.equal(merged.get(EMBED), expected(ckpts, EMBED, 0.5, 0.3, 4, suffix="_bf16"))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "bfloat16"


def test_merged_checkpoint_loads_and_runs_with_tied_head(ckpts, tmp_path):
    from transformers import AutoModelForCausalLM

    merge_checkpoints(*roles(ckpts), tmp_path / "m", alpha=0.5, drop_rate=0.3, seed=0)
    assert HEAD not in CheckpointReader(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    state = model.state_dict()
    assert torch.equal(state[EMBED], CheckpointReader(tmp_path / "m").get(EMBED))
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    tok = ckpts["models"]["sft"][1]
    logits = model(**tok(["12+34="], return_tensors="pt")).logits
    assert torch.isfinite(logits).all()
    for fname in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "m" / fname).read_bytes() == (ckpts["sft"] / fname).read_bytes()


def test_untied_sft_takes_the_tied_inputs_embedding_as_their_head(ckpts, tmp_path):
    from transformers import LlamaForCausalLM

    from engine.models.tiny import tiny_config

    model, tok = ckpts["models"]["sft"]
    config = tiny_config(len(tok))
    config.tie_word_embeddings = False
    untied = LlamaForCausalLM(config)
    untied.load_state_dict({k: v for k, v in model.state_dict().items() if k != HEAD}, strict=False)
    with torch.no_grad():
        untied.lm_head.weight.copy_(torch.randn_like(untied.lm_head.weight))
    sft = save(untied, tok, tmp_path / "sft_untied")
    assert HEAD in CheckpointReader(sft)
    merge_checkpoints(ckpts["base"], ckpts["prev"], sft, tmp_path / "m", alpha=0.5, drop_rate=0.3, seed=8)
    head = CheckpointReader(tmp_path / "m").get(HEAD)
    base_e, prev_e = (CheckpointReader(ckpts[r]).get(EMBED) for r in ("base", "prev"))
    want = imm_step(base_e, prev_e, untied.lm_head.weight.detach(), 0.5, 0.3, 1.0,
                    torch.Generator().manual_seed(tensor_seed(8, HEAD)))
    assert torch.equal(head, want)


def test_layer_scale_mapping_and_callable(ckpts, tmp_path):
    name = "model.layers.1.mlp.up_proj.weight"
    merge_checkpoints(*roles(ckpts), tmp_path / "map", 0.5, 0.3, 1, layer_scale={name: 2.5})
    merged = CheckpointReader(tmp_path / "map")
    assert torch.equal(merged.get(name), expected(ckpts, name, 0.5, 0.3, 1, scale=2.5))
    assert torch.equal(merged.get(EMBED), expected(ckpts, EMBED, 0.5, 0.3, 1))
    merge_checkpoints(*roles(ckpts), tmp_path / "fn", 0.5, 0.3, 1, layer_scale=lambda n: 2.5 if n == name else 1.0)
    assert folder_bytes(tmp_path / "map") == folder_bytes(tmp_path / "fn")


def write_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture
def odd_ckpts(ckpts, tmp_path) -> dict:
    """Broken variants of sft: another architecture, other shapes, a missing and an extra tensor."""
    from safetensors.torch import load_file, save_file

    out = {}
    out["arch"] = Path(shutil.copytree(ckpts["sft"], tmp_path / "arch"))
    write_config(out["arch"], model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    model, tok = new_tiny_model(seed=3, hidden=64)
    out["shape"] = save(model, tok, tmp_path / "shape")
    for label, change in (("missing", lambda w: w.pop("model.norm.weight")),
                          ("extra", lambda w: w.__setitem__("model.extra.weight", torch.zeros(3)))):
        folder = Path(shutil.copytree(ckpts["sft"], tmp_path / label))
        weights = load_file(folder / "model.safetensors")
        change(weights)
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        out[label] = folder
    return out


@pytest.mark.parametrize("case,message", [
    ({"alpha": 1.5}, "alpha: got 1.5; allowed: a number in [0, 1]"),
    ({"alpha": -0.1}, "alpha: got -0.1"),
    ({"drop": 1.0}, "drop rate: got 1.0; allowed: a number in [0, 1)"),
    ({"drop": -0.2}, "drop rate: got -0.2"),
    ({"sft": "arch"}, "config.json model_type: the checkpoints differ"),
    ({"sft": "shape"}, "shapes differ"),
    ({"sft": "missing"}, "tensors in only some checkpoints: model.norm.weight (in base, prev; not in sft)"),
    ({"sft": "extra"}, "model.extra.weight (in sft; not in base, prev)"),
    ({"sft": "nowhere"}, "checkpoint folder does not exist"),
    ({"out": "nonempty"}, "which exists and is not an empty folder"),
])
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(ckpts, odd_ckpts, tmp_path, capsys, case, message):
    sft = odd_ckpts.get(case.get("sft"), tmp_path / "nowhere" if "sft" in case else ckpts["sft"])
    out = tmp_path / "out"
    if case.get("out") == "nonempty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    argv = ["merge", "--base", str(ckpts["base"]), "--prev", str(ckpts["prev"]), "--sft", str(sft),
            "--alpha", str(case.get("alpha", 0.5)), "--drop", str(case.get("drop", 0.3)), "--seed", "1",
            "--out", str(out)]
    before = listing(tmp_path)
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err
    if case.get("out") == "nonempty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert nothing_written(tmp_path, out, before)


def test_bad_layer_scale_and_device_are_user_errors(ckpts, tmp_path):
    before = listing(tmp_path)
    with pytest.raises(UserError, match="layer scale: names that are no tensor of sft: model.nope"):
        merge_checkpoints(*roles(ckpts), tmp_path / "m", 0.5, 0.3, 1, layer_scale={"model.nope": 2.0})
    with pytest.raises(UserError, match="layer scale of .*: got nan"):
        merge_checkpoints(*roles(ckpts), tmp_path / "m", 0.5, 0.3, 1, layer_scale=lambda n: float("nan"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="device: got 'cuda'"):
            merge_checkpoints(*roles(ckpts), tmp_path / "m", 0.5, 0.3, 1, device="cuda")
    assert nothing_written(tmp_path, tmp_path / "m", before)


def test_empty_out_folder_is_used(ckpts, tmp_path):
    (tmp_path / "m").mkdir()
    merge_checkpoints(*roles(ckpts), tmp_path / "m", 0.5, 0.3, 1)
    assert (tmp_path / "m" / "model.safetensors").exists()


def test_crash_mid_write_leaves_no_output_folder(ckpts, tmp_path, monkeypatch):
    opened = []

    class CrashingWriter(merge_stream.ShardWriter):
        def __init__(self, path, *args, **kw):
            if opened:
                raise OSError("disk full (simulated, on the second shard)")
            opened.append(path)
            super().__init__(path, *args, **kw)

    monkeypatch.setattr(merge_stream, "ShardWriter", CrashingWriter)
    before = listing(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        merge_checkpoints(*roles(ckpts), tmp_path / "m", 0.5, 0.3, 1, max_shard_bytes=300_000)
    assert opened and opened[0].parent != tmp_path / "m"  # the first shard was written, elsewhere
    assert nothing_written(tmp_path, tmp_path / "m", before)


def test_imm_merge_command_end_to_end(ckpts, tmp_path):
    cmd = [sys.executable, "-m", "imm_tui", "merge", "--base", str(ckpts["base"]), "--prev", str(ckpts["prev"]),
           "--sft", str(ckpts["sft"]), "--alpha", "0.5", "--drop", "0.3", "--seed", "1", "--out", str(tmp_path / "m")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "merged 38 tensors" in proc.stdout
    merge_checkpoints(*roles(ckpts), tmp_path / "api", 0.5, 0.3, 1)
    assert folder_bytes(tmp_path / "m") == folder_bytes(tmp_path / "api")
