import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imm_tui.cli import main
from engine.diagnostics import importance, spearman, weight_change
from engine.models.tiny import new_tiny_model

ROOT = Path(__file__).resolve().parents[1]
LAYERS = 4


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Before (sharded) and after, where the deeper a layer, the more it moved; plus a JSONL set."""
    root = tmp_path_factory.mktemp("analyze")
    model, tokenizer = new_tiny_model(None, seed=4, layers=LAYERS, hidden=32, heads=2)
    model.save_pretrained(root / "before", max_shard_size="30KB")
    tokenizer.save_pretrained(root / "before")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".layers." in name:
                p.add_(torch.randn_like(p) * 0.01 * (int(name.split(".")[2]) + 1))
    model.save_pretrained(root / "after")
    data = root / "set.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i}+{i}", "answer": f"{i}+{i}={2 * i}."}) + "\n" for i in range(6)))
    return root / "before", root / "after", data


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "imm_tui", "analyze", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_analyze_json_end_to_end(checkpoints):
    before, after, data = checkpoints
    proc = run_cli("--before", str(before), "--after", str(after), "--data", str(data), "--format", "json",
                   "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)

    change = weight_change(before, after)
    imp = importance(before, [(f"{i}+{i}", f"{i}+{i}={2 * i}.") for i in range(6)], batch_size=4, device="cpu")
    rows = report["layers"]
    assert [r["layer"] for r in rows] == list(range(LAYERS))
    for r in rows:
        n = r["layer"]
        assert r["weight_change"] == pytest.approx(change.layers[n], rel=1e-9)
        assert r["importance"] == pytest.approx(imp.layers[n], rel=1e-5)
        assert r["modules"]["self_attn.q_proj"]["weight_change"] == pytest.approx(change.modules[n]["self_attn.q_proj"])
        assert set(r["modules"]) == {f"self_attn.{m}_proj" for m in "qkvo"} | {f"mlp.{m}_proj" for m in ("gate", "up", "down")}
    assert sum(r["weight_change_pct"] for r in rows) == pytest.approx(100.0)
    assert [r["weight_change"] for r in rows] == sorted(r["weight_change"] for r in rows)
    r = spearman([row["importance"] for row in rows], [row["weight_change"] for row in rows])
    assert report["spearman"] == pytest.approx(r)
    assert report["verdict"] == ("superficial" if r < 0.3 else "aligned")
    assert report["top_quarter"]["weight_change"] == [LAYERS - 1]
    assert report["tied"] == {"lm_head.weight": "model.embed_tokens.weight"}
    assert report["unassigned"]["names"]["embedding"] == ["model.embed_tokens.weight"]
    assert report["importance_set"]["n_examples"] == 6


def test_analyze_table_without_data_shows_weight_change_only(checkpoints, capsys):
    before, after, _ = checkpoints
    assert main(["analyze", "--before", str(before), "--after", str(after)]) == 0
    out = capsys.readouterr().out
    assert "no importance data" in out and "not in a layer: embedding" in out
    assert out.splitlines()[LAYERS].split()[0] == str(LAYERS - 1)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "missing.jsonl"], "--data: file 'missing.jsonl' does not exist"),
        (["--data", "arith_add3", "--limit", "0"], "--limit: got 0; allowed: an integer >= 1"),
    ],
)
def test_analyze_rejects_bad_input_with_exit_2(checkpoints, capsys, extra, message):
    before, after, _ = checkpoints
    assert main(["analyze", "--before", str(before), "--after", str(after), *extra]) == 2
    assert message in capsys.readouterr().err
