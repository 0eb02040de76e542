"""engine.api against a real run of the tiny engine: every read function, the read-only store,
progress rows during a run, log tailing, validation, export and compare."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine import api
from engine.errors import ConfigError, RunStateError, UserError

from conftest import FAST, PROJECT, TINY_PRESET, gguf_stand_ins, wait_until

HEAVY = ("torch", "transformers", "safetensors", "numpy", "sqlite_utils", "pandas")


def db_rows(home: Path, sql: str, args=()) -> list[tuple]:
    with sqlite3.connect(home / "imm.db") as db:
        return db.execute(sql, args).fetchall()


def test_reads_load_nothing_heavy(finished_run):
    """Import the API and call every read function: no torch, numpy, transformers, safetensors
    or sqlite-utils gets imported."""
    home, run_id = finished_run
    code = f"""
import sys
from engine import api
h, r = {str(home)!r}, {run_id!r}
api.list_runs(h); api.run_detail(r, h); api.results(r, h); api.layer_stats(r, home=h); api.verdicts(r, h)
api.trials(r, home=h); api.progress(r, h); api.tail_log(r, 0, h); api.sample_sets(r, 1, h)
api.samples(r, 1, "generated", h); api.export(r, "json", home=h); api.export(r, "csv", "layers", home=h)
api.presets(); api.config_toml(api.run_detail(r, h).config)
print(",".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"


def test_run_reads_match_the_database(finished_run):
    home, run_id = finished_run
    [summary] = api.list_runs(home)
    assert summary.id == run_id and summary.status == api.RunStatus.DONE
    assert summary.stages_done == summary.stages_total == len(db_rows(home, "SELECT * FROM stages"))
    assert summary.iteration is None and summary.stage is None and summary.elapsed > 0
    assert summary.model == "builtin:tiny-arith" and summary.method == "imm"
    detail = api.run_detail(run_id[:12], home)  # a unique prefix works
    assert detail.summary.id == run_id and detail.config["name"] == "tiny-arith"
    assert [(s.iteration, s.stage) for s in detail.stages] == db_rows(home, "SELECT iteration, stage FROM stages ORDER BY ord")
    assert all(s.status == "done" and s.seconds >= 0 for s in detail.stages)
    assert detail.log_path.is_file()

    rows = api.results(run_id, home)
    assert [r.label for r in rows][0] == "Base" and {r.label for r in rows} == {"Base", "SFT1", "Merge1"}
    stored = {(c, t, m): v for c, t, m, v in db_rows(home, "SELECT checkpoint, task, metric, value FROM metrics")}
    assert {(r.checkpoint, r.task, r.metric): r.value for r in rows} == stored
    ids = [r.value for r in rows if r.domain == "id" and r.metric == "pass@1"]
    assert summary.best_id == max(ids)
    ood = {}
    for r in rows:
        if r.domain == "ood":
            ood.setdefault(r.checkpoint, []).append(r.value)
    assert summary.best_ood == pytest.approx(max(sum(v) / len(v) for v in ood.values()))

    layers = api.layer_stats(run_id, 1, "sft1", home)
    assert [s.layer for s in layers] == [0, 1, 2, 3]
    assert sum(s.weight_change_pct for s in layers) == pytest.approx(100)
    assert all(s.modules and all(m.weight_change is not None for m in s.modules.values()) for s in layers)
    assert {s.checkpoint for s in api.layer_stats(run_id, home=home)} == {"sft1", "merge1"}
    verdicts = api.verdicts(run_id, home)
    assert {v.checkpoint for v in verdicts} == {"sft1", "merge1"}
    assert all(v.verdict in ("superficial", "aligned") and isinstance(v.top_importance, tuple) for v in verdicts)
    assert summary.verdict == verdicts[-1].verdict
    assert api.progress(run_id, home) is None  # nothing is running
    assert api.trials(run_id, home=home) == []


def test_samples_and_log(finished_run):
    home, run_id = finished_run
    assert api.sample_sets(run_id, 1, home)[:2] == ["generated", "kept"]
    generated = api.samples(run_id, 1, "generated", home)
    kept = api.samples(run_id, 1, "kept", home)
    assert generated and kept and len(kept) <= len(generated)
    assert all(s.correct for s in kept)
    assert sum(bool(s.kept) for s in generated) == len(kept)
    assert any(s.correct is False for s in generated)
    evals = api.samples(run_id, 1, "eval:sft1", home, limit=5)
    assert len(evals) == 5 and all(s.extracted is not None or s.correct is False for s in evals)
    with pytest.raises(RunStateError, match="allowed: generated, kept"):
        api.samples(run_id, 1, "bogus", home)

    lines, offset = api.tail_log(run_id, 0, home)
    assert any("finished" in line for line in lines) and offset == api.log_path(run_id, home).stat().st_size
    assert not any("%|" in line for line in lines), "progress bars leak into engine.log"
    assert api.tail_log(run_id, offset, home) == ([], offset)


def test_tail_log_reads_only_what_was_appended(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("a\nb\npart")
    lines, off = api.read_log(log, 0)
    assert lines == ["a", "b"] and off == 4  # the partial line waits for its newline
    with log.open("a") as f:
        f.write("ial\nc\n")
    lines, off = api.read_log(log, off)
    assert lines == ["partial", "c"] and off == log.stat().st_size
    log.write_text("new\n")  # truncated (or rotated to a fresh file): starts again
    assert api.read_log(log, off) == (["new"], 4)
    log.rename(tmp_path / "engine.log.1")
    log.write_text("rotated\n")
    assert api.read_log(log, 4) == (["rotated"], 8)  # longer than the offset, but replaced: from the start
    big = "".join(f"line {i}\n" for i in range(100_000))
    log.write_text(big)
    lines, off = api.read_log(log, None)  # no offset yet: the last part, from a line start
    assert lines[-1] == "line 99999" and lines[0].startswith("line ") and off == len(big)
    assert len("\n".join(lines)) <= api.reads.TAIL_START_BYTES
    assert api.read_log(tmp_path / "missing.log", 0) == ([], 0)
    (tmp_path / "bad.log").write_bytes(b"ok\n\xff\xfe\n")
    assert api.read_log(tmp_path / "bad.log", 0)[0] == ["ok", "\ufffd\ufffd"]


def test_readers_create_nothing_and_read_a_database_they_cannot_write(finished_run, tmp_path):
    missing = tmp_path / "nowhere"
    assert api.list_runs(missing) == [] and not missing.exists()
    home, run_id = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(home, copy, symlinks=True, ignore=shutil.ignore_patterns("models"))
    with sqlite3.connect(copy / "imm.db") as db:  # as a finished engine leaves it: the WAL folded in
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        (copy / f"imm.db{suffix}").unlink(missing_ok=True)
    before = sorted(p.name for p in copy.iterdir())
    locked = subprocess.run(["chattr", "+i", str(copy)], capture_output=True).returncode == 0
    if not locked:
        if os.geteuid() == 0:
            pytest.skip("cannot make a folder unwritable here (no chattr, running as root)")
        copy.chmod(0o555)
    try:
        assert [r.id for r in api.list_runs(copy)] == [run_id]
        assert api.results(run_id, copy) == api.results(run_id, home)
    finally:
        subprocess.run(["chattr", "-i", str(copy)], capture_output=True) if locked else copy.chmod(0o755)
    assert sorted(p.name for p in copy.iterdir()) == before


def test_bad_databases_give_clear_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "imm.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunStateError, match="imm.db"):
        api.list_runs(bad)
    newer = tmp_path / "newer"
    newer.mkdir()
    with sqlite3.connect(newer / "imm.db") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RunStateError, match="schema version 99"):
        api.start_run(TINY_PRESET, home=newer)
    with pytest.raises(RunStateError, match="no run 'nope'"):
        api.run_detail("nope", newer)


def test_validate_reports_every_bad_field_and_start_writes_nothing(tmp_path):
    errors = api.validate(TINY_PRESET, ["merge.alpha=2", "merge.drop_rate=1.0", "generation.k=0",
                                        "tasks.ood=arith_add4,nope", "seed=3"])
    assert {e.field: e.value for e in errors} == {"merge.alpha": 2.0, "merge.drop_rate": 1.0, "generation.k": 0,
                                                  "tasks.ood[1]": "nope"}
    assert "[0, 1]" in next(e.allowed for e in errors if e.field == "merge.alpha")
    assert api.validate(TINY_PRESET, ["seed=3"]) == []
    assert [e.field for e in api.validate(tmp_path / "missing.toml")] == ["preset"]
    home = tmp_path / "home"
    with pytest.raises(ConfigError, match="merge.alpha"):
        api.start_run(TINY_PRESET, ["merge.alpha=-1"], home=home)
    assert not home.exists()


def test_config_toml_round_trips_every_preset(tmp_path, monkeypatch):
    from engine.config import resolve

    monkeypatch.chdir(tmp_path)
    gguf_stand_ins(tmp_path)
    for preset in sorted((PROJECT / "presets").glob("*.toml")):
        cfg = resolve(preset)
        text = api.config_toml(cfg.to_dict())
        (tmp_path / "p.toml").write_text(text)
        assert resolve(tmp_path / "p.toml").to_dict() == {**cfg.to_dict(), "name": cfg.name}, preset.name
    saved = api.save_preset("mine", TINY_PRESET, ["merge.alpha=0.3"], folder=tmp_path / "presets")
    assert resolve(saved).merge.alpha == 0.3 and resolve(saved).name == "mine"
    with pytest.raises(UserError, match="exists"):
        api.save_preset("mine", TINY_PRESET, folder=tmp_path / "presets")
    with pytest.raises(UserError, match="preset name"):
        api.save_preset("../x", TINY_PRESET, folder=tmp_path / "presets")


def test_a_preset_is_found_by_name_the_users_first(tmp_path, monkeypatch):
    from engine.config import resolve

    monkeypatch.setenv("IMM_PRESETS_DIR", str(tmp_path / "mine"))
    bundled = {p.name: p.path for p in api.presets() if p.source == "bundled"}
    assert bundled["tiny-arith"].samefile(TINY_PRESET) and set(bundled) == {p.stem for p in (PROJECT / "presets").glob("*.toml")}
    assert resolve("tiny-arith").to_dict() == resolve(TINY_PRESET).to_dict()
    api.save_preset("tiny-arith", TINY_PRESET, ["merge.alpha=0.3"])  # a saved preset of the same name wins
    assert resolve("tiny-arith").merge.alpha == 0.3 and resolve(TINY_PRESET).merge.alpha == 0.5
    with pytest.raises(ConfigError) as refused:
        resolve("tiny-arithm")
    assert refused.value.path == "preset" and "tiny-arith, tiny-arith-iimm, tiny-arith-vanilla" in refused.value.allowed


def test_export_and_compare(finished_run, tmp_path):
    home, run_id = finished_run
    as_json = json.loads(api.export(run_id, "json", home=home))
    assert as_json["id"] == run_id and len(as_json["results"]) == len(api.results(run_id, home))
    md = api.export(run_id, "md", home=home)
    assert md.splitlines()[0].startswith("| checkpoint |") and "| SFT1 |" in md
    out = api.export(run_id, "csv", "layers", home=home, path=tmp_path / "layers.csv")
    lines = Path(out).read_text().splitlines()
    assert lines[0].startswith("iteration,checkpoint,layer,importance") and len(lines) > 8
    with pytest.raises(UserError, match="export path: cannot write .*missing"):
        api.export(run_id, "md", home=home, path=tmp_path / "missing" / "r.md")
    with pytest.raises(UserError, match="allowed: csv"):
        api.export(run_id, "md", "layers", home=home)
    with pytest.raises(UserError, match="two or more"):
        api.compare([run_id], home)
    cmp = api.compare([run_id, run_id], home)
    assert cmp.config_diff == {} and set(cmp.results) == {run_id}


def test_elapsed_counts_every_attempt_of_a_stage(tmp_path):
    """A stage stopped after 30 s and started again: its 30 s stay in the run's elapsed time and
    in the stage's time (the engine's own start_stage, as a resumed run calls it)."""
    from app_fixtures import RUN_STOPPED, make_snapshot_home
    from engine.runstate.store import Store

    home = make_snapshot_home(tmp_path / "home")
    store = Store(home)
    store.start_stage(RUN_STOPPED, 1, "merge")
    began = time.time() - 100
    store.set_stage(RUN_STOPPED, 1, "merge", status="pending", started=began, ended=began + 30)  # stopped
    before = api.run_detail(RUN_STOPPED, home).summary.elapsed
    store.start_stage(RUN_STOPPED, 1, "merge")  # resumed
    store.update_run(RUN_STOPPED, status="running", pid=os.getpid())
    after = api.run_detail(RUN_STOPPED, home)
    merge = next(s for s in after.stages if (s.iteration, s.stage) == (1, "merge"))
    assert merge.status == "running" and merge.spent == pytest.approx(30)
    assert after.summary.elapsed >= before
    store.finish_stage(RUN_STOPPED, 1, "merge")
    merge = next(s for s in api.run_detail(RUN_STOPPED, home).stages if (s.iteration, s.stage) == (1, "merge"))
    assert merge.seconds >= 30
    # An engine killed inside the stage: its attempt counts up to its last progress row.
    store.start_stage(RUN_STOPPED, 1, "eval")
    store.set_stage(RUN_STOPPED, 1, "eval", started=began)
    store.set_progress(RUN_STOPPED, 1, "eval", step=5, total=10, unit="questions")
    store.db["progress"].update((RUN_STOPPED, 1, "eval"), {"updated": began + 20})
    store.start_stage(RUN_STOPPED, 1, "eval")
    assert store.db["stages"].get((RUN_STOPPED, 1, "eval"))["spent"] == pytest.approx(20)


def test_compare_lists_the_name_and_not_an_empty_table_against_a_missing_one(tmp_path):
    from app_fixtures import RUN_DONE, RUN_STOPPED, make_snapshot_home
    from engine.runstate.store import Store

    home = make_snapshot_home(tmp_path / "home")
    store = Store(home)
    config = json.loads(store.db["runs"].get(RUN_STOPPED)["config"])
    config["tasks"]["specs"] = {}  # an empty table where the other run has none
    config["name"] = "other-name"
    store.db["runs"].update(RUN_STOPPED, {"config": json.dumps(config)})
    other = json.loads(store.db["runs"].get(RUN_DONE)["config"])
    other["tasks"]["specs"] = None
    store.db["runs"].update(RUN_DONE, {"config": json.dumps(other)})
    diff = api.compare([RUN_DONE, RUN_STOPPED], home).config_diff
    assert "tasks.specs" not in diff
    assert diff["name"] == (other["name"], "other-name")


@pytest.mark.slow
def test_progress_rows_and_readers_during_a_real_run(home):
    """A detached run: readers in two threads poll every read function while the engine writes;
    no error, bounded latency, and progress rows of every kind of stage are seen."""
    sets = [kv for kv in FAST if not kv.startswith("iterations")] + ["iterations=1", "analyze.when=every", "analyze.limit=32"]
    started = api.start_run(TINY_PRESET, sets, home=home)
    assert started.pid and started.status == "running"
    seen, latencies, errors, labels = set(), [], [], set()
    done = threading.Event()

    def poll():
        offset = None
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                api.list_runs(home)
                p = api.progress(started.run_id, home)
                api.results(started.run_id, home)
                _, offset = api.tail_log(started.run_id, offset, home)
                if p is not None:
                    assert 0 <= p.step <= p.total and p.unit
                    seen.add((p.stage, p.unit))
                    if p.stage == "eval" and p.iteration == 1:
                        labels.add(p.label)
            except Exception as exc:  # noqa: BLE001 - any error fails the test below
                errors.append(repr(exc))
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: api.run_detail(started.run_id, home).summary.status not in ("created", "running"), 600,
                   "the run to end", every=0.5)
    finally:
        done.set()
    for t in threads:
        t.join()
    assert api.run_detail(started.run_id, home).summary.status == "done"
    assert not errors, errors[:3]
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.2, f"median reader latency {latencies[len(latencies) // 2]:.3f} s"
    stages = {s for s, _ in seen}
    assert {"generate", "sft", "eval"} <= stages, seen
    rows = db_rows(home, "SELECT stage, step, total, unit, loss FROM progress")
    finished = {r[0] for r in rows if r[1] == r[2] and r[2] > 0}
    assert {"generate", "sft", "eval", "merge", "analyze"} <= finished, rows
    assert all(r[4] is not None for r in rows if r[0] == "sft")
    # The eval bar names the checkpoint it answers with; the stored row is the last one's.
    assert labels <= {"SFT1 (1 of 2)", "Merge1 (2 of 2)"} and labels, labels
    assert db_rows(home, "SELECT label FROM progress WHERE stage = 'eval' AND iteration = 1") == [("Merge1 (2 of 2)",)]


def test_the_contracts_layer_every_engine_module_and_leave_the_app_only_the_api():
    """Every top-level engine module sits in a layer (an exhaustive layers contract names each, so
    a new module is not silently allowed), and the app may reach past engine.api only to
    engine.errors (a protected contract over every engine module)."""
    import pkgutil
    import tomllib

    import engine

    contracts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [layers] = [c for c in contracts if c["type"] == "layers"]
    placed = {m.strip() for layer in layers["layers"] for m in layer.replace("|", ":").split(":")}
    assert layers["containers"] == ["engine"] and layers["exhaustive"]
    assert placed == {m.name for m in pkgutil.iter_modules(engine.__path__)}
    [app] = [c for c in contracts if c["type"] == "protected"]
    assert (app["protected_modules"], app["allowed_importers"]) == (["engine.*"], ["engine"])
    assert app["ignore_imports"] == ["imm_tui.** -> engine.api", "imm_tui.** -> engine.errors"]
