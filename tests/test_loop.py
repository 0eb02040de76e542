"""The whole loop through the real command line: a real tiny model generates, is filtered,
fine-tuned, merged and evaluated; killed with SIGKILL inside each stage and resumed, it gives the
same metric rows as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, PROJECT, TINY_PRESET, imm, wait_until

pytestmark = pytest.mark.slow


def run_id_of(proc) -> str:
    first = proc.stdout.splitlines()[0]
    assert first.startswith("run "), proc.stdout + proc.stderr
    return first.split()[1]


def show_json(run_id: str, home: Path) -> dict:
    return json.loads(imm("show", run_id, "--format", "json", home=home, check=True).stdout)


def metric_rows(home: Path, run_id: str) -> list[tuple]:
    with sqlite3.connect(home / "imm.db") as db:
        return db.execute(
            "SELECT checkpoint, iteration, task, domain, metric, value, n FROM metrics WHERE run_id = ? ORDER BY 1, 3, 5",
            [run_id],
        ).fetchall()


def start_engine(*args: str, home: Path, hold: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    if hold:
        env["IMM_TEST_HOLD"] = hold
    return subprocess.Popen([sys.executable, "-m", "imm_tui", *args, "--home", str(home)], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, base_models):
    """One uninterrupted IMM run (1 iteration, small sizes) to compare resumed runs against."""
    home = tmp_path_factory.mktemp("ref-home")
    (home / "models").symlink_to(base_models)
    proc = imm("run", str(TINY_PRESET), *sum((["--set", o] for o in FAST), []), home=home, check=True)
    return home, run_id_of(proc), proc


def test_run_prints_id_first_then_the_results_table(reference):
    home, run_id, proc = reference
    lines = proc.stdout.splitlines()
    assert lines[0] == f"run {run_id}"
    table = "\n".join(lines[1:])
    assert "arith_add3 (id) pass@1 %" in table and "arith_mix3 (ood) pass@1 %" in table
    assert [line.split()[0] for line in lines[-3:]] == ["Base", "SFT1", "Merge1"]


def test_show_json_holds_config_stages_and_results(reference):
    home, run_id, _ = reference
    shown = show_json(run_id, home)
    assert shown["status"] == "done" and shown["config"]["merge"]["alpha"] == 0.5
    assert [(s["iteration"], s["stage"]) for s in shown["stages"]] == [
        (0, "build"), (0, "eval"), (1, "generate"), (1, "filter"), (1, "sft"), (1, "merge"), (1, "eval")]
    assert all(s["status"] == "done" for s in shown["stages"])
    filt = next(s for s in shown["stages"] if s["stage"] == "filter")["info"]
    assert filt["samples"] == 64 and 0 < filt["kept"] <= 64
    results = shown["results"]
    assert {(r["checkpoint"], r["task"]) for r in results} == {
        (c, t) for c in ("base", "sft1", "merge1") for t in ("arith_add3", "arith_add4", "arith_mix3")}
    for r in results:
        assert r["metric"] == "pass@1" and 0 <= r["value"] <= 100 and r["n"] == 32
        assert r["domain"] == ("id" if r["task"] == "arith_add3" else "ood")
    # artifacts: real HF checkpoints and JSONL samples in the run folder
    run_dir = Path(imm("show", run_id, "--format", "json", home=home).stdout and shown["stages"][4]["artifact"]).parent
    assert (run_dir / "sft" / "model.safetensors").exists() and (run_dir / "merged" / "config.json").exists()
    assert len((run_dir / "samples.jsonl").read_text().splitlines()) == 64


def test_show_formats(reference):
    home, run_id, _ = reference
    csv = imm("show", run_id, "--format", "csv", home=home, check=True).stdout.splitlines()
    assert csv[0].startswith("checkpoint,arith_add3 (id) pass@1 %") and [r.split(",")[0] for r in csv[1:]] == ["Base", "SFT1", "Merge1"]
    md = imm("show", run_id, "--format", "md", home=home, check=True).stdout.splitlines()
    assert md[1].startswith("| --- |") and md[2].startswith("| Base |")
    listing = imm("ls", home=home, check=True).stdout
    assert run_id in listing and "done" in listing


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="the CPU case; the GPU one is below")
def test_without_a_gpu_stages_hold_no_peak_gpu_memory_and_show_prints_none(reference):
    home, run_id, _ = reference
    assert not any("peak_gpu_gib" in s["info"] for s in show_json(run_id, home)["stages"])
    assert "peak GPU memory" not in imm("show", run_id, home=home, check=True).stdout


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_on_a_gpu_every_stage_holds_its_peak_gpu_memory_and_show_prints_it(reference):
    home, run_id, _ = reference
    stages = show_json(run_id, home)["stages"]
    peaks = {(s["iteration"], s["stage"]): s["info"]["peak_gpu_gib"] for s in stages}
    assert len(peaks) == len(stages) and all(v >= 0 for v in peaks.values()), peaks
    assert peaks[(1, "sft")] > peaks[(1, "filter")]  # training holds weights, gradients and Adam's moments
    line = next(x for x in imm("show", run_id, home=home, check=True).stdout.splitlines() if x.startswith("peak GPU memory"))
    assert f"1:sft {peaks[(1, 'sft')]:g}" in line


# (stage, when): killed right after the stage started, or after its artifacts were written but
# before it was marked done; one chain of kills covers every stage of an iteration.
KILL_CHAIN = ["0:build:end", "0:eval:end", "1:generate:end", "1:filter:start", "1:filter:end", "1:sft:end", "1:merge:start", "1:merge:end",
              "1:eval:start", "1:eval:end"]


@pytest.mark.fault
def test_sigkill_inside_every_stage_then_resume_gives_identical_metrics(home, reference):
    ref_home, ref_id, _ = reference
    overrides = sum((["--set", o] for o in FAST), [])
    run_id = None
    for hold in KILL_CHAIN:
        args = ("run", str(TINY_PRESET), *overrides) if run_id is None else ("resume", run_id)
        proc = start_engine(*args, home=home, hold=hold)
        if run_id is None:
            run_id = proc.stdout.readline().split()[1]
        holding = Path(home / "runs" / run_id / "HOLDING")
        wait_until(holding.exists, what=f"engine to reach {hold}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        holding.unlink()
        it, stage, _ = hold.split(":")
        row = next(s for s in show_json(run_id, home)["stages"] if s["stage"] == stage and s["iteration"] == int(it))
        assert row["status"] == "running"  # killed inside the stage: not marked done
    listing = imm("ls", home=home, check=True).stdout
    assert "interrupted" in listing
    imm("resume", run_id, home=home, check=True)
    assert show_json(run_id, home)["status"] == "done"
    assert metric_rows(home, run_id) == metric_rows(ref_home, ref_id)


@pytest.mark.fault
def test_a_second_engine_on_a_running_run_refuses(home):
    overrides = sum((["--set", o] for o in FAST), [])
    first = start_engine("run", str(TINY_PRESET), *overrides, home=home, hold="0:eval:start")
    run_id = first.stdout.readline().split()[1]
    try:
        wait_until((home / "runs" / run_id / "HOLDING").exists, what="first engine")
        second = imm("resume", run_id, home=home)  # the command sees the engine and refuses
        assert second.returncode == 3 and f"run {run_id} is running (engine pid {first.pid})" in second.stderr
        # An engine process started anyway: the run lock refuses it.
        engine = subprocess.run([sys.executable, "-m", "engine", "run", run_id, "--home", str(home)], cwd=PROJECT,
                                capture_output=True, text=True, timeout=120)
        assert engine.returncode == 3
        assert f"run {run_id} is already being run by pid {first.pid}" in engine.stderr
    finally:
        first.kill()
        first.wait()


@pytest.mark.fault
def test_detached_run_stops_at_the_next_safe_point(home):
    overrides = sum((["--set", o] for o in FAST), [])
    started = imm("run", str(TINY_PRESET), *overrides, "--detach", home=home, check=True,
                  env={"IMM_TEST_HOLD": "0:eval:start"})
    run_id = run_id_of(started)
    assert "engine pid" in started.stdout  # the command returned while the engine works on
    holding = home / "runs" / run_id / "HOLDING"
    wait_until(holding.exists, what="detached engine")
    assert "stop requested" in imm("stop", run_id, home=home, check=True).stdout
    holding.unlink()  # let the engine go on to its next safe point: the first finished eval chunk
    wait_until(lambda: show_json(run_id, home)["status"] == "stopped", what="engine to stop at a safe point")
    stages = show_json(run_id, home)["stages"]
    assert [s["status"] for s in stages[:3]] == ["done", "pending", "pending"]
    assert len((home / "runs" / run_id / "iter_0" / "eval_base.jsonl.partial").read_text().splitlines()) == 1 + 1
    assert "stopped at a safe point" in (home / "runs" / run_id / "engine.log").read_text()
    assert imm("stop", run_id, home=home).returncode == 3  # nothing left to stop


def test_saved_samples_regrade_with_imm_grade(reference):
    home, run_id, _ = reference
    saved = home / "runs" / run_id / "iter_1" / "eval_sft1.jsonl"
    records = [json.loads(line) for line in saved.read_text().splitlines()]
    assert len(records) == 3 * 32 and {"gold", "completion", "correct"} <= set(records[0])
    proc = imm("grade", "arith_add3", str(saved), check=True)
    regraded = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["correct"] for r in regraded] == [r["correct"] for r in records]
    assert f"{sum(r['correct'] for r in records)}/{len(records)} correct" in proc.stderr


def test_a_run_writes_progress_rows_and_no_progress_bars(reference):
    home, run_id, proc = reference
    with sqlite3.connect(home / "imm.db") as db:
        db.row_factory = sqlite3.Row
        rows = {(r["iteration"], r["stage"]): dict(r) for r in db.execute("SELECT * FROM progress WHERE run_id = ?", [run_id])}
    for key, unit in [((1, "generate"), "samples"), ((1, "filter"), "samples"), ((1, "sft"), "steps"),
                      ((1, "merge"), "tensors"), ((0, "eval"), "questions"), ((1, "eval"), "questions")]:
        row = rows[key]
        assert row["unit"] == unit and row["total"] > 0 and row["step"] == row["total"], (key, row)
    assert rows[(1, "generate")]["total"] == 64 and rows[(1, "generate")]["tokens_per_s"] > 0
    assert rows[(1, "sft")]["loss"] is not None and rows[(1, "sft")]["tokens_per_s"] > 0
    assert rows[(1, "eval")]["total"] == 3 * 32  # restarted per checkpoint: the last one's questions
    log = (home / "runs" / run_id / "engine.log").read_text()
    assert "[iter 1] sft: done" in log
    assert "%|" not in log and "%|" not in proc.stderr and "%|" not in proc.stdout


def test_filter_writes_every_sample_graded(reference):
    home, run_id, _ = reference
    iteration = home / "runs" / run_id / "iter_1"
    graded = [json.loads(line) for line in (iteration / "graded.jsonl").read_text().splitlines()]
    samples = (iteration / "samples.jsonl").read_text().splitlines()
    kept = (iteration / "kept.jsonl").read_text().splitlines()
    assert len(graded) == len(samples) == 64
    assert all({"extracted", "correct", "kept"} <= set(g) for g in graded)
    assert sum(g["kept"] for g in graded) == len(kept) and all(g["correct"] for g in graded if g["kept"])


@pytest.mark.fault
def test_a_reader_that_goes_away_does_not_fail_the_run(home):
    """`imm run PRESET | head -1` (to grab the run id): the pipe closes after the first line, the
    run still finishes and the command exits 0."""
    sets = " ".join(f"--set {o}" for o in FAST)
    shell = f"{sys.executable} -m imm_tui run {TINY_PRESET} {sets} --home {home} 2>/dev/null | head -1; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", shell], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("run ")
    run_id = proc.stdout.split()[1]
    assert show_json(run_id, home)["status"] == "done"


# ---------------------------------------------------------------- resuming inside a stage

# Small chunks and many optimizer steps, so that kills and stops land inside the long stages:
# 4 generation chunks of 16 prompts, 2 eval chunks per task, SFT of 2 epochs of about 6 steps.
INSIDE = FAST + ["generation.batch_size=16", "eval.batch_size=16", "sft.batch_size=4", "sft.grad_accum=1", "sft.epochs=2"]
CHECKPOINTED = INSIDE + ["sft.checkpoint_every=3"]


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def inside_reference(tmp_path_factory, base_models):
    """One uninterrupted run with the INSIDE sizes and no training checkpoints at all."""
    home = tmp_path_factory.mktemp("inside-ref-home")
    (home / "models").symlink_to(base_models)
    proc = imm("run", str(TINY_PRESET), *sets(INSIDE + ["sft.checkpoint_every=0", "sft.checkpoint_minutes=0"]),
               home=home, check=True)
    return home, run_id_of(proc)


def kill_inside(home: Path, hold: str, run_id: str | None = None) -> str:
    """Start (or resume) a run with CHECKPOINTED sizes, SIGKILL it at the hold point; its id."""
    args = ("run", str(TINY_PRESET), *sets(CHECKPOINTED)) if run_id is None else ("resume", run_id)
    proc = start_engine(*args, home=home, hold=hold)
    run_id = run_id or proc.stdout.readline().split()[1]
    holding = home / "runs" / run_id / "HOLDING"
    wait_until(holding.exists, what=f"engine to reach {hold}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    holding.unlink()
    return run_id


def stage_status(home: Path, run_id: str, t: int, stage: str) -> str:
    return next(s["status"] for s in show_json(run_id, home)["stages"] if (s["iteration"], s["stage"]) == (t, stage))


def assert_same_run(home: Path, run_id: str, reference: tuple[Path, str]) -> None:
    """What "the same" means for a run resumed inside its stages: byte-identical samples, kept
    samples and eval completions, bit-identical SFT and merged weights, identical metric rows; and
    no training checkpoint or partial file left behind."""
    from safetensors.torch import load_file

    ref_home, ref_id = reference
    ours, theirs = home / "runs" / run_id, ref_home / "runs" / ref_id
    assert show_json(run_id, home)["status"] == "done"
    for name in ("samples.jsonl", "kept.jsonl", "eval_sft1.jsonl", "eval_merge1.jsonl", "iter_0/eval_base.jsonl"):
        path = name if "/" in name else f"iter_1/{name}"
        assert (ours / path).read_bytes() == (theirs / path).read_bytes(), name
    for folder in ("sft", "merged"):
        a, b = load_file(ours / "iter_1" / folder / "model.safetensors"), load_file(theirs / "iter_1" / folder / "model.safetensors")
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), folder
    assert metric_rows(home, run_id) == metric_rows(ref_home, ref_id)
    assert not list(ours.rglob("*.partial")) and not list(ours.rglob("sft_checkpoint.pt"))


@pytest.mark.fault
def test_sigkill_inside_generation_and_eval_chunks_then_resume_gives_the_same_run(home, inside_reference):
    run_id = kill_inside(home, "1:generate:chunk2")
    partial = home / "runs" / run_id / "iter_1" / "samples.jsonl.partial"
    assert len(partial.read_text().splitlines()) == 1 + 2  # header + two finished chunks, fsynced
    assert stage_status(home, run_id, 1, "generate") == "running"
    kill_inside(home, "1:eval:sft1-chunk3", run_id)
    assert len((home / "runs" / run_id / "iter_1" / "eval_sft1.jsonl.partial").read_text().splitlines()) == 1 + 3
    imm("resume", run_id, home=home, check=True)
    log = (home / "runs" / run_id / "engine.log").read_text()
    assert "2 finished chunk(s) kept from samples.jsonl.partial" in log
    assert "3 finished chunk(s) kept from eval_sft1.jsonl.partial" in log
    assert_same_run(home, run_id, inside_reference)


@pytest.mark.fault
def test_sigkill_inside_sft_mid_epoch_then_resume_gives_the_same_run(home, inside_reference):
    run_id = kill_inside(home, "1:sft:checkpoint3")
    assert (home / "runs" / run_id / "iter_1" / "sft_checkpoint.pt").exists()
    assert not (home / "runs" / run_id / "iter_1" / "sft").exists()
    imm("resume", run_id, home=home, check=True)
    log = (home / "runs" / run_id / "engine.log").read_text()
    assert "sft: resuming from the checkpoint at optimizer step 3 (epoch 1, 3 of its steps done)" in log
    assert_same_run(home, run_id, inside_reference)


def sft_curve(home: Path, run_id: str) -> list[tuple]:
    with sqlite3.connect(home / "imm.db") as db:
        return db.execute("SELECT iteration, step, loss, lr, grad_norm, tokens FROM sft_steps WHERE run_id = ? "
                          "ORDER BY iteration, step", [run_id]).fetchall()


@pytest.mark.fault
def test_an_sft_curve_killed_at_a_checkpoint_continues_on_resume_without_duplicate_or_missing_steps(home, inside_reference):
    run_id = kill_inside(home, "1:sft:checkpoint3")
    assert [row[1] for row in sft_curve(home, run_id)] == [1, 2, 3]  # flushed before the checkpoint was saved
    imm("resume", run_id, home=home, check=True)
    ours, reference = sft_curve(home, run_id), sft_curve(*inside_reference)
    assert [row[1] for row in ours] == list(range(1, len(reference) + 1)) and len(reference) > 6
    assert ours == reference  # the same losses, learning rates, norms and tokens as the uninterrupted run
    shown = show_json(run_id, home)["sft_steps"]
    assert [(s["iteration"], s["step"], s["loss"]) for s in shown] == [row[:3] for row in reference]


@pytest.mark.fault
def test_sigterm_inside_sft_and_imm_stop_inside_eval_stop_there_then_resume_gives_the_same_run(home, inside_reference):
    engine = start_engine("run", str(TINY_PRESET), *sets(CHECKPOINTED), home=home, hold="1:sft:checkpoint3")
    run_id = engine.stdout.readline().split()[1]
    run_dir = home / "runs" / run_id
    wait_until((run_dir / "HOLDING").exists, what="engine to reach SFT's checkpoint 3")
    os.kill(engine.pid, signal.SIGTERM)
    (run_dir / "HOLDING").unlink()
    assert engine.wait(timeout=120) == 0
    assert show_json(run_id, home)["status"] == "stopped" and stage_status(home, run_id, 1, "sft") == "pending"
    assert (run_dir / "iter_1" / "sft_checkpoint.pt").exists() and not (run_dir / "iter_1" / "sft").exists()
    assert "[iter 1] sft: stop requested; stopped at checkpoint3" in (run_dir / "engine.log").read_text()

    engine = start_engine("resume", run_id, home=home, hold="1:eval:merge1-chunk1")
    wait_until((run_dir / "HOLDING").exists, what="engine to reach Merge1's first eval chunk")
    assert "stop requested" in imm("stop", run_id, home=home, check=True).stdout
    (run_dir / "HOLDING").unlink()
    assert engine.wait(timeout=120) == 0
    assert show_json(run_id, home)["status"] == "stopped" and stage_status(home, run_id, 1, "eval") == "pending"
    assert stage_status(home, run_id, 1, "sft") == "done" and not (run_dir / "STOP").exists()
    assert len((run_dir / "iter_1" / "eval_merge1.jsonl.partial").read_text().splitlines()) == 1 + 1

    imm("resume", run_id, home=home, check=True)
    assert_same_run(home, run_id, inside_reference)
