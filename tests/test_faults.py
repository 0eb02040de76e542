"""Faults a long run meets on a shared machine: power loss (artifacts and the commit that marks a
stage done are fsynced), a full disk, running out of memory, an SSH session that drops (SIGHUP)
and a console that goes away (EPIPE, EIO). Real runs of the tiny model, real files, real signals."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, PROJECT, TINY_PRESET, imm, wait_until
from engine import api
from test_loop import run_id_of, show_json, start_engine

pytestmark = pytest.mark.fault  # benchmarks/reliability.py counts this group

SETS = sum((["--set", o] for o in FAST), [])
BASE = "tiny-arith-v1"


def engine_env(**extra: str) -> dict:
    return {**os.environ, **extra}


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------ durability: fsync before publishing


@pytest.fixture
def fsync_log(monkeypatch) -> list[tuple]:
    """Every os.fsync (with the path its descriptor names) and os.replace, in order."""
    calls: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def assert_published_durably(calls: list[tuple], final: Path) -> None:
    """`final` came from a rename whose source (each file in it, then the folder) was fsynced
    before it, and whose parent folder was fsynced after it."""
    final = final.resolve()
    i = next(i for i, c in enumerate(calls) if c[0] == "replace" and Path(c[2]).resolve() == final)
    tmp = Path(calls[i][1]).resolve()
    before = [Path(c[1]) for c in calls[:i] if c[0] == "fsync"]
    if final.is_dir():
        names = sorted(p.name for p in final.iterdir())
        assert names and all(tmp / n in before for n in names), (names, before)
        assert before.index(tmp) > max(before.index(tmp / n) for n in names)  # files first, then the folder
    else:
        assert tmp in before
    assert ("fsync", str(final.parent)) in calls[i + 1:]


def test_a_saved_checkpoint_is_fsynced_file_by_file_then_renamed(tmp_path, base_models, fsync_log):
    from engine.models.loading import load_model, load_tokenizer, save_checkpoint

    model = load_model(base_models / BASE, "cpu", None)
    final = save_checkpoint(model, load_tokenizer(base_models / BASE), tmp_path / "sft")
    assert (final / "model.safetensors").is_file()
    assert_published_durably(fsync_log, final)


def test_merge_output_and_samples_are_fsynced_before_their_rename(tmp_path, base_models, fsync_log):
    from engine.jsonl import write_records
    from engine.merge.stream import merge_checkpoints

    base = base_models / BASE
    out = merge_checkpoints(base, base, base, tmp_path / "merged", 0.5, 0.0, 0, max_shard_bytes=2**20).out
    assert len(list(out.glob("model-*-of-*.safetensors"))) > 1  # several streamed shards and the index
    assert_published_durably(fsync_log, out)
    write_records(tmp_path / "samples.jsonl", [{"q": "1+1", "completion": "2"}])
    assert_published_durably(fsync_log, tmp_path / "samples.jsonl")


def test_a_stage_and_an_adoption_are_recorded_all_or_nothing(tmp_path):
    """finish_stage (a stage's rows, then the stage marked done) and adopt_trial (the merge's info
    and metrics, then the later stages reset) write in one transaction: a write that fails midway
    leaves nothing behind, and a reader never sees half of one."""
    from engine.config import resolve
    from engine.runstate.plan import create_run
    from engine.runstate.store import Store

    store = Store(tmp_path / "home")
    run_id, _ = create_run(store, resolve(TINY_PRESET, FAST), str(TINY_PRESET))
    metric = {"checkpoint": "base", "iteration": 0, "task": "arith_add3", "domain": "id", "metric": "pass@1",
              "value": 50.0, "n": 32}
    with pytest.raises(Exception):  # the stage to mark done is not in the plan
        store.finish_stage(run_id, 9, "eval", rows={"metrics": [metric]})
    assert store.metrics(run_id) == []
    with pytest.raises(Exception):  # the last stage to reset is not in the plan
        store.adopt_trial(run_id, 1, 1, {"adopted_trial": 1}, [metric], [(1, "eval"), (9, "analyze")])
    stages = {(s["iteration"], s["stage"]): s for s in store.stages(run_id)}
    assert stages[(1, "merge")]["info"] is None and store.metrics(run_id) == []


def test_a_stage_start_that_reads_then_writes_is_not_failed_by_another_connections_commit(tmp_path, monkeypatch):
    """start_stage reads the stage's row, then writes it. Another connection of the same home (the
    system-history thread, a sweep, `imm stop`) committing in between failed it with "database
    is locked" at once, whatever the busy timeout (WAL's BUSY_SNAPSHOT; a stage failed so under
    load). Now the transaction holds the write lock from its start: the other commit waits."""
    import sqlite_utils

    from engine.config import resolve
    from engine.runstate.plan import create_run
    from engine.runstate.store import Store

    store = Store(tmp_path / "home")
    run_id, _ = create_run(store, resolve(TINY_PRESET, FAST), str(TINY_PRESET))
    other = Store.another_connection(tmp_path / "home")
    other.db.execute("PRAGMA busy_timeout = 50")  # its commit is refused soon instead of waiting 10 s
    real_get = sqlite_utils.db.Table.get
    refused = []

    def get_then_other_commits(table, key):  # between start_stage's read and its write
        row = real_get(table, key)
        if table.db is store.db and table.name == "stages":
            try:
                other.update_run(run_id, status="stopping")
            except sqlite3.OperationalError as exc:
                refused.append(str(exc))
        return row

    monkeypatch.setattr(sqlite_utils.db.Table, "get", get_then_other_commits)
    store.start_stage(run_id, 0, "eval")
    assert refused and set(refused) == {"database is locked"}  # it waited behind the write lock (get runs twice)
    assert [s["status"] for s in store.stages(run_id) if (s["iteration"], s["stage"]) == (0, "eval")] == ["running"]


def test_the_writer_sets_synchronous_full_even_where_wal_defaults_to_normal(tmp_path, monkeypatch):
    """synchronous = FULL on the engine's connection (SQLite then syncs the WAL at every commit, so
    a commit survives a power loss), also where the SQLite build makes WAL mode default to NORMAL
    (SQLITE_DEFAULT_WAL_SYNCHRONOUS=1, as some distributions ship it). What is checked is the
    setting; the power loss itself is not simulated."""
    import sqlite_utils

    from engine.runstate.store import Store

    real_enable_wal = sqlite_utils.Database.enable_wal

    def enable_wal_normal(db):
        real_enable_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")

    monkeypatch.setattr(sqlite_utils.Database, "enable_wal", enable_wal_normal)
    store = Store(tmp_path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


# ------------------------------------------------------------ disk full


def mount_small_tmpfs(folder: Path, size: int) -> bool:
    """A tmpfs of `size` bytes at `folder`; False where this user may not mount (then the test
    uses the IMM_TEST_ENOSPC fault-injection point of engine.durable instead)."""
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size // 1024}k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    return proc.returncode == 0


def test_a_checkpoint_save_on_a_full_disk_says_what_it_needed_and_leaves_nothing(tmp_path, base_models):
    """safetensors (Rust) reports ENOSPC as its own error, "... (os error 28)": still a DiskFullError."""
    from engine.errors import DiskFullError
    from engine.models.loading import load_model, load_tokenizer, save_checkpoint

    disk = tmp_path / "disk"
    if not mount_small_tmpfs(disk, 2**20):
        pytest.skip("mount not permitted: the merge test covers a full disk through IMM_TEST_ENOSPC")
    try:
        model = load_model(base_models / BASE, "cpu", None)
        with pytest.raises(DiskFullError) as failed:
            save_checkpoint(model, load_tokenizer(base_models / BASE), disk / "sft")
        model_bytes = (base_models / BASE / "model.safetensors").stat().st_size
        assert failed.value.path == disk / "sft" and abs(failed.value.needed - model_bytes) < 0.05 * model_bytes
        assert 0 < failed.value.free <= 2**20 and str(failed.value).startswith(f"disk full writing {disk / 'sft'}: it needs about ")
        assert list(disk.iterdir()) == []  # no partial checkpoint, its space given back
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.slow
def test_disk_full_during_the_merge_fails_it_clearly_keeps_sft_and_resume_finishes(tmp_path, base_models, monkeypatch,
                                                                                    record_property):
    model_bytes = (base_models / BASE / "model.safetensors").stat().st_size
    home = tmp_path / "home"
    # Room for everything up to the merge (one checkpoint: sft1), not for the merged one.
    mounted = mount_small_tmpfs(home, int(model_bytes * 1.6) + 2**19)
    record_property("disk_full", "tmpfs" if mounted else "IMM_TEST_ENOSPC")
    print(f"disk full simulated with {'a small tmpfs' if mounted else 'IMM_TEST_ENOSPC=merged'}")
    try:
        (home / "models").symlink_to(base_models)
        if not mounted:
            monkeypatch.setenv("IMM_TEST_ENOSPC", "merged")  # start_engine passes the environment on
        proc = start_engine("run", str(TINY_PRESET), *SETS, home=home, hold="1:merge:start")
        monkeypatch.delenv("IMM_TEST_ENOSPC", raising=False)
        run_id = proc.stdout.readline().split()[1]
        iteration = home / "runs" / run_id / "iter_1"
        wait_until((home / "runs" / run_id / "HOLDING").exists, what="the merge to start")
        sft = folder_digest(iteration / "sft")
        (home / "runs" / run_id / "HOLDING").unlink()
        assert proc.wait(timeout=300) != 0

        detail = show_json(run_id, home)
        merge = next(s for s in detail["stages"] if s["stage"] == "merge")
        assert detail["status"] == "failed" and merge["status"] == "failed"
        found = re.search(r"DiskFullError: disk full writing (\S+): it needs about ([\d.]+) MiB, ([\d.]+) (KiB|MiB) free there; "
                          r"free some space, then `imm resume` the run", merge["error"])
        assert found, merge["error"]
        assert Path(found[1]) == iteration / "merged"
        assert abs(float(found[2]) * 2**20 - model_bytes) < 0.05 * model_bytes  # the merged weights
        if mounted:
            assert float(found[3]) * (2**20 if found[4] == "MiB" else 2**10) < model_bytes
        assert not (iteration / "merged").exists() and not list(iteration.glob(".merged.tmp-*"))
        assert folder_digest(iteration / "sft") == sft  # the earlier checkpoint is intact

        if mounted:  # space is back
            subprocess.run(["mount", "-o", "remount,size=64m", str(home)], check=True)
        imm("resume", run_id, home=home, check=True)
        detail = show_json(run_id, home)
        assert detail["status"] == "done" and all(s["status"] == "done" for s in detail["stages"])
        assert folder_digest(iteration / "sft") == sft
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(home)], check=True)


# ------------------------------------------------------------ out of memory


def test_an_out_of_memory_error_names_the_settings_to_lower():
    from engine.config import resolve
    from engine.runstate.names import Stage
    from engine.stage_errors import stage_error

    cfg = resolve(TINY_PRESET, FAST)
    sft = stage_error(MemoryError(), cfg, "r1", Stage.SFT)
    assert sft.startswith("MemoryError (out of memory: ") and "lower the per-device sft.batch_size (now 16)" in sft
    assert "`imm resume r1 --set sft.batch_size=8 --set sft.grad_accum=2`" in sft and "sft.max_length (now 96)" in sft
    generate = stage_error(MemoryError(), cfg, "r1", Stage.GENERATE)
    assert f"`imm resume r1 --set generation.batch_size={cfg.generation.batch_size // 2}`" in generate
    import torch

    oom = stage_error(torch.cuda.OutOfMemoryError("CUDA out of memory"), cfg, "r1", Stage.EVAL)
    assert oom.startswith("OutOfMemoryError: CUDA out of memory (out of memory: lower eval.batch_size")
    assert f"--set eval.batch_size={cfg.eval.batch_size // 2}`" in oom
    assert stage_error(ValueError("x"), cfg, "r1", Stage.SFT) == "ValueError: x"


@pytest.mark.slow
def test_out_of_memory_fails_the_run_and_resume_with_a_smaller_batch_finishes(home):
    run = imm("run", str(TINY_PRESET), *SETS, home=home, env={"IMM_TEST_FAULT": "1:sft:memory"})
    run_id = run_id_of(run)
    # the foreground run ends as a failed run, told in plain words (no traceback), exit 1
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "failed: [iter 1] sft: MemoryError: injected by IMM_TEST_FAULT" in run.stderr
    assert f"continue with: imm resume {run_id}" in run.stderr
    detail = show_json(run_id, home)
    sft = next(s for s in detail["stages"] if s["stage"] == "sft")
    assert detail["status"] == "failed" and sft["status"] == "failed"  # failed, not interrupted
    assert sft["error"].startswith("MemoryError: injected by IMM_TEST_FAULT (out of memory: lower the per-device sft.batch_size")
    assert f"imm resume {run_id} --set sft.batch_size=8 --set sft.grad_accum=2" in sft["error"]
    assert "failed" in imm("ls", home=home, check=True).stdout

    def stored():
        with sqlite3.connect(home / "imm.db") as db:
            rows = (db.execute("SELECT config, status, updated FROM runs WHERE id = ?", [run_id]).fetchall(),
                    db.execute("SELECT * FROM stages WHERE run_id = ? ORDER BY ord", [run_id]).fetchall())
        return rows, (home / "runs" / run_id / "config.json").read_bytes()

    before = stored()
    for sets, field in ((["sft.lr=1e-3"], "sft.lr"), (["eval.batch_size=8", "seed=3"], "seed"),
                        (["sft.batch_size=8"], "sft.batch_size"), (["eval.batch_size=0"], "eval.batch_size")):
        refused = imm("resume", run_id, *sum((["--set", s] for s in sets), []), home=home)
        assert refused.returncode == 2 and refused.stderr.startswith(f"error: {field}: got "), refused.stderr
        assert stored() == before  # nothing written
    from engine.config import RESUMABLE_KEYS

    assert f"allowed: a setting a resume may change: {', '.join(RESUMABLE_KEYS)} (" in \
        imm("resume", run_id, "--set", "merge.alpha=0.9", home=home).stderr

    imm("resume", run_id, "--set", "sft.batch_size=8", "--set", "sft.grad_accum=2", home=home, check=True)
    detail = show_json(run_id, home)
    assert detail["status"] == "done"
    assert (detail["config"]["sft"]["batch_size"], detail["config"]["sft"]["grad_accum"]) == (8, 2)
    assert json.loads((home / "runs" / run_id / "config.json").read_text())["sft"]["batch_size"] == 8
    sft = next(s for s in detail["stages"] if s["stage"] == "sft")
    assert sft["info"]["global_batch"] == 16  # as many examples per optimizer step as the run began with


# ------------------------------------------------------------ hang-ups and a console that goes away


@pytest.mark.slow
def test_sighup_does_not_stop_a_detached_engine(home):
    started = imm("run", str(TINY_PRESET), *SETS, "--detach", home=home, check=True, env={"IMM_TEST_HOLD": "0:eval:start"})
    run_id = run_id_of(started)
    holding = home / "runs" / run_id / "HOLDING"
    wait_until(holding.exists, what="detached engine")
    pid = int(holding.read_text())
    os.kill(pid, signal.SIGHUP)  # what an SSH session that drops sends
    holding.unlink()
    # Killed, it would end interrupted; stopped by the signal, stopped: it ends done, the same engine.
    end = wait_until(lambda: (r := api.run_detail(run_id, home).summary).status not in ("created", "running") and r,
                     what="the run to end")
    assert end.status == "done" and re.findall(r"engine pid (\d+)", api.log_path(run_id, home).read_text()) == [str(pid)]


def test_the_echo_leaves_when_stderr_goes_away_and_the_log_keeps_everything(tmp_path, monkeypatch):
    """A pipe whose reader closed it (EPIPE) and a terminal that hung up (EIO: a pty whose master
    closed): the echo removes itself at the first failed line; the log file gets every line."""
    from engine.console import ConsoleEcho
    from engine.driver import make_logger

    read_end, pipe = os.pipe()
    os.close(read_end)
    master, terminal = pty.openpty()
    os.close(master)
    for name, fd in (("pipe", pipe), ("terminal", terminal)):
        stream = os.fdopen(fd, "w")
        monkeypatch.setattr(sys, "stderr", stream)
        log = make_logger(name, tmp_path / f"{name}.log", echo=True)
        assert any(isinstance(h, ConsoleEcho) for h in log.handlers)
        for i in range(3):
            log.info("line %d", i)
        assert not any(isinstance(h, ConsoleEcho) for h in log.handlers), name
        stream.write("later writers go nowhere\n")
        stream.flush()  # no error: the descriptor is /dev/null now
        stream.close()
        assert [line.split(" ", 1)[1] for line in (tmp_path / f"{name}.log").read_text().splitlines()] == \
            ["line 0", "line 1", "line 2"]
    for h in [*logging.getLogger("imm.pipe").handlers, *logging.getLogger("imm.terminal").handlers]:
        h.close()


@pytest.mark.slow
@pytest.mark.parametrize("stderr", ["pipe", "terminal"])
def test_an_engine_whose_console_went_away_finishes_the_run(home, stderr):
    """`python -m engine run` with stderr on a pipe whose reader closes it (EPIPE) or on a terminal
    that hangs up (EIO: a pty whose master closes), and stdout on a closed pipe too: the run
    finishes, the engine exits 0, engine.log has it all."""
    from engine.config import resolve
    from engine.runstate.plan import create_run
    from engine.runstate.store import Store

    run_id, paths = create_run(Store(home), resolve(TINY_PRESET, FAST), str(TINY_PRESET))
    reader, writer = pty.openpty() if stderr == "terminal" else os.pipe()
    out_reader, out_writer = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", run_id, "--home", str(home)], cwd=PROJECT,
                            env=engine_env(), stdin=subprocess.DEVNULL, stdout=out_writer, stderr=writer,
                            start_new_session=True)
    os.close(out_writer)
    os.close(writer)
    assert os.read(reader, 4096)  # the first echoed line arrived, then both readers go away
    os.close(reader)
    os.close(out_reader)
    assert proc.wait(timeout=300) == 0
    assert show_json(run_id, home)["status"] == "done"
    log = paths.log.read_text()
    assert f"run {run_id}: engine pid {proc.pid}" in log and "[iter 1] eval: done" in log and f"run {run_id} finished" in log
