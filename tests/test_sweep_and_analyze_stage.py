"""IIMM + the diagnostics stage inside a real run, then alpha / p sweeps on its iteration and
adopting a trial as the iteration's merge."""
from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import FAST, TINY_PRESET, imm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def iimm_run(tmp_path_factory, base_models):
    home = tmp_path_factory.mktemp("iimm-home")
    (home / "models").symlink_to(base_models)
    overrides = FAST + ["analyze.when=every", "analyze.limit=32", "merge.mode=importance"]
    proc = imm("run", str(TINY_PRESET), *sum((["--set", o] for o in overrides), []), home=home, check=True)
    return home, proc.stdout.splitlines()[0].split()[1]


def query(home, sql, *args):
    with sqlite3.connect(home / "imm.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, args)]


def test_diagnostics_stage_stores_layer_rows_and_verdicts(iimm_run):
    home, run_id = iimm_run
    stages = json.loads(imm("show", run_id, "--format", "json", home=home, check=True).stdout)["stages"]
    assert [s["stage"] for s in stages if s["iteration"] == 1] == ["generate", "filter", "sft", "merge", "eval", "analyze"]
    rows = query(home, "SELECT * FROM layer_stats WHERE run_id = ? ORDER BY checkpoint, layer", run_id)
    assert {(r["checkpoint"], r["layer"]) for r in rows} == {(c, n) for c in ("merge1", "sft1") for n in range(4)}
    for ckpt in ("sft1", "merge1"):
        mine = [r for r in rows if r["checkpoint"] == ckpt]
        assert sum(r["weight_change_pct"] for r in mine) == pytest.approx(100.0)
        assert all(r["importance"] > 0 and r["weight_change"] > 0 for r in mine)
        assert "mlp.down_proj" in json.loads(mine[0]["modules"])
    verdicts = query(home, "SELECT * FROM verdicts WHERE run_id = ?", run_id)
    assert {v["checkpoint"] for v in verdicts} == {"sft1", "merge1"}
    for v in verdicts:
        assert -1 <= v["spearman"] <= 1 and v["verdict"] in ("superficial", "aligned")
        assert len(json.loads(v["top_importance"])) == 1  # top quarter of 4 layers
    run_dir = home / "runs" / run_id / "iter_1"
    assert (run_dir / "diagnostics.json").exists() and (run_dir / "importance.json").exists()


def test_iimm_merge_scales_layers_by_normalised_importance(iimm_run):
    home, run_id = iimm_run
    merge = next(s for s in json.loads(imm("show", run_id, "--format", "json", home=home).stdout)["stages"]
                 if s["stage"] == "merge")
    scales = merge["info"]["layer_scales"]
    importance = json.loads((home / "runs" / run_id / "iter_1" / "importance.json").read_text())["layers"]
    total = sum(importance.values())
    assert scales == {n: pytest.approx(4 * importance[n] / total, abs=1e-4) for n in importance}
    assert merge["info"]["mode"] == "importance"


def test_sweep_reproduces_the_runs_merge_then_adopt_resets_later_stages(iimm_run):
    home, run_id = iimm_run
    out = imm("sweep", run_id, "--iter", "1", "--alpha", "0.5,0.9", "--drop", "0.1", home=home, check=True).stdout
    lines = out.splitlines()
    assert lines[-4].split()[:3] == ["trial", "alpha", "p"]
    assert lines[-5].startswith("alpha = weight of the BASE")  # nobody reads the sweep backwards
    trials = query(home, "SELECT * FROM sweeps WHERE run_id = ? ORDER BY id", run_id)
    assert [(t["alpha"], t["drop_rate"], t["adopted"]) for t in trials] == [(0.5, 0.1, 0), (0.9, 0.1, 0)]
    run_merge = {(m["task"], m["value"]) for m in query(home, "SELECT * FROM metrics WHERE run_id = ? AND checkpoint = 'merge1'", run_id)}
    # the run's own (alpha, p) with the run's merge seed gives the run's merge, to the last digit
    assert {(r["task"], r["value"]) for r in json.loads(trials[0]["results"])} == run_merge

    imm("sweep", run_id, "--iter", "1", "--adopt", str(trials[1]["id"]), home=home, check=True)
    adopted = {(m["task"], m["value"]) for m in query(home, "SELECT * FROM metrics WHERE run_id = ? AND checkpoint = 'merge1'", run_id)}
    assert adopted == {(r["task"], r["value"]) for r in json.loads(trials[1]["results"])}
    shown = json.loads(imm("show", run_id, "--format", "json", home=home).stdout)
    assert shown["status"] == "stopped"
    by_stage = {s["stage"]: s for s in shown["stages"] if s["iteration"] == 1}
    assert by_stage["merge"]["info"]["alpha"] == 0.9 and by_stage["merge"]["info"]["adopted_trial"] == trials[1]["id"]
    assert by_stage["analyze"]["status"] == "pending"  # its weight change to Merge1 is out of date
    imm("resume", run_id, home=home, check=True)
    assert json.loads(imm("show", run_id, "--format", "json", home=home).stdout)["status"] == "done"


@pytest.mark.parametrize("args, message", [
    (["--iter", "1", "--alpha", "1.5"], "--alpha: got 1.5"),
    (["--iter", "1", "--drop", "1"], "--drop: got 1.0"),
    (["--iter", "7"], "--iter: got 7"),
    (["--iter", "1", "--adopt", "999"], "--adopt: got 999"),
])
def test_sweep_rejects_bad_input(iimm_run, args, message):
    home, run_id = iimm_run
    before = query(home, "SELECT count(*) AS n FROM sweeps")[0]["n"]
    proc = imm("sweep", run_id, *args, home=home)
    assert proc.returncode == 2 and message in proc.stderr
    assert query(home, "SELECT count(*) AS n FROM sweeps")[0]["n"] == before
