"""Readers against a writer at a high rate: the app, CLI readers and engine.api pollers read one
home while a writer process drives the engine's own writer (engine.runstate.store.Store) far
faster than a real engine does (a real stage coalesces progress to one row every 0.5 s):

- a progress row every few milliseconds (step = the tick number, so readers can check order),
- a batch of log lines per tick appended to the run's engine.log,
- every 10th tick a metrics row committed with `finish_stage` (the transaction that marks a
  stage done), each under its own checkpoint name, so lost rows can be counted.

Readers: `imm show RUN --format json` / `imm ls` in a loop in subprocesses (the real CLI), engine.api
pollers in another process (list_runs, run_detail, progress, results, tail_log), and the Textual
app itself with the run's detail screen open, switching tabs. Afterwards every row and line the
writer says it committed must be in the database and the log.

    python -m benchmarks.soak [--seconds 120] [--cli 2]      (run from the repository root)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK_S = 0.005
LINES_PER_TICK = 10
METRIC_EVERY = 10


def quantiles(xs: list[float]) -> dict:
    """Median, p95 and max in ms (None when nothing was measured)."""
    if not xs:
        return {"n": 0, "median_ms": None, "p95_ms": None, "max_ms": None}
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": 1000 * statistics.median(xs), "p95_ms": 1000 * xs[int(0.95 * (len(xs) - 1))],
            "max_ms": 1000 * xs[-1]}


def make_run(home: Path) -> str:
    """A run row and folder made the way `imm run` makes them (no engine started)."""
    from engine.config import resolve
    from engine.runstate.plan import create_run
    from engine.runstate.store import Store

    run_id, _ = create_run(Store(home), resolve(ROOT / "presets" / "tiny-arith.toml"), "presets/tiny-arith.toml")
    return run_id


# ---------------------------------------------------------------- child processes
def write(home: Path, run_id: str, seconds: float) -> dict:
    """The writer: what it committed, for the caller to find again."""
    from engine.runstate.paths import run_paths
    from engine.runstate.store import Store

    store = Store(home)
    log = run_paths(home, store.run(run_id)["run_dir"]).log
    store.update_run(run_id, status="running", pid=os.getpid())
    store.set_stage(run_id, 1, "generate", status="running", started=time.time())
    tick = lines = metrics = 0
    commit_s = []
    end = time.time() + seconds
    with open(log, "a") as f:
        while time.time() < end:
            tick += 1
            t0 = time.perf_counter()
            store.set_progress(run_id, 1, "generate", step=tick, total=10**9, unit="samples", rate=1.0 / TICK_S,
                               tokens_per_s=1e4, loss=None)
            if tick % METRIC_EVERY == 0:
                metrics += 1
                row = {"checkpoint": f"soak{metrics}", "iteration": 1, "task": "arith_add3", "domain": "id",
                       "metric": "pass@1", "value": float(metrics % 100), "n": 1}
                store.finish_stage(run_id, 1, "eval", info={"soak": metrics}, rows={"metrics": [row]})
            commit_s.append(time.perf_counter() - t0)
            f.write("".join(f"12:00:00 [iter 1] generate: soak line {lines + i}\n" for i in range(LINES_PER_TICK)))
            f.flush()
            lines += LINES_PER_TICK
            time.sleep(TICK_S)
    store.update_run(run_id, status="done", pid=None)
    return {"ticks": tick, "lines": lines, "metrics": metrics, "commit": quantiles(commit_s)}


def poll_api(home: Path, run_id: str, seconds: float) -> dict:
    """engine.api pollers (two threads), as the app's workers read: latency of one round of
    every read, errors, and whether progress ever went backwards."""
    from engine import api

    latencies, errors, backwards = [], [], []
    end = time.time() + seconds

    def loop():
        offset, last = None, 0
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                api.list_runs(home)
                api.run_detail(run_id, home)
                api.results(run_id, home)
                p = api.progress(run_id, home)
                _, offset = api.tail_log(run_id, offset, home)
                if p is not None and p.stage == "generate":
                    if p.step < last:
                        backwards.append((last, p.step))
                    last = p.step
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.01)

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latency": quantiles(latencies), "errors": errors[:5], "n_errors": len(errors), "backwards": len(backwards)}


def poll_cli(home: Path, run_id: str, seconds: float) -> dict:
    """The real CLI in a loop: `imm show RUN --format json` then `imm ls`, each a new process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    latencies, errors = [], []
    end = time.time() + seconds
    while time.time() < end:
        for args in (["show", run_id, "--format", "json"], ["ls"]):
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "imm_tui", *args, "--home", str(home)], capture_output=True,
                               text=True, env=env, cwd=ROOT)
            latencies.append(time.perf_counter() - t0)
            if p.returncode != 0 or "locked" in p.stderr:
                errors.append(f"imm {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()[-200:]}")
    return {"latency": quantiles(latencies), "errors": errors[:5], "n_errors": len(errors)}


CHILDREN = {"write": write, "api": poll_api, "cli": poll_cli}


def spawn(role: str, home: Path, run_id: str, seconds: float, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "benchmarks.soak", "--child", role, "--home", str(home),
                             "--run", run_id, "--seconds", str(seconds), "--out", str(out)], cwd=ROOT, env=env)


# ---------------------------------------------------------------- the app
async def watch_in_app(home: Path, run_id: str, seconds: float) -> dict:
    """The app on the run's detail screen for `seconds`, switching tabs every second: the latency
    of its panes' reads (LivePoll.read, in worker threads) and the reads that failed (a live pane
    shows the error as text, the run screen as a notification)."""
    from imm_tui.app import ImmApp
    from imm_tui.screens.run_detail import RunDetailScreen
    from imm_tui.widgets.live_poll import LivePoll, Polled

    failed: list[str] = []
    reads: list[float] = []
    originals = {cls: cls.read for cls in LivePoll.__subclasses__()}
    polled = Polled.__init__

    def timed(read):
        def wrapper(self):
            t0 = time.perf_counter()
            try:
                return read(self)
            finally:
                reads.append(time.perf_counter() - t0)
        return wrapper

    def record(self, data):
        if isinstance(data, Exception):
            failed.append(f"{type(data).__name__}: {data}")
        polled(self, data)

    for cls, read in originals.items():
        cls.read = timed(read)
    Polled.__init__ = record
    try:
        async with ImmApp(str(home)).run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            pilot.app.push_screen(RunDetailScreen(run_id))
            end, i = time.time() + seconds, 0
            while time.time() < end:
                await pilot.press("12345"[i % 5])
                i += 1
                await asyncio.sleep(1.0)
    finally:
        for cls, read in originals.items():
            cls.read = read
        Polled.__init__ = polled
    return {"latency": quantiles(reads), "n_errors": len(failed), "errors": failed[:5]}


# ---------------------------------------------------------------- the whole soak
def soak(home: Path, seconds: float, cli: int = 2, app: bool = True) -> dict:
    """Run the writer and every reader for `seconds`; what each saw, and the rows lost."""
    from engine.runstate.paths import run_paths
    from engine.runstate.reader import Reader

    run_id = make_run(home)
    with tempfile.TemporaryDirectory() as tmp:
        outs = {role: Path(tmp) / f"{role}.json" for role in ["write", "api", *(f"cli{i}" for i in range(cli))]}
        procs = [spawn(role.rstrip("0123456789"), home, run_id, seconds, out) for role, out in outs.items()]
        app_seen = asyncio.run(watch_in_app(home, run_id, seconds)) if app else None
        for p in procs:
            p.wait()
        seen = {role: json.loads(out.read_text()) if out.exists() else {"crashed": True} for role, out in outs.items()}
    wrote = seen.pop("write")
    if app_seen is not None:
        seen["app"] = app_seen
    r = Reader(home)
    metrics = len([m for m in r.metrics(run_id) if m["checkpoint"].startswith("soak")])
    step = max((p["step"] for p in r.progress(run_id) if p["stage"] == "generate"), default=0)
    log = run_paths(home, r.run(run_id)["run_dir"]).log.read_text().count("soak line")
    return {
        "seconds": seconds, "run": run_id, "writer": wrote, "readers": seen,
        "lost": {"metrics": wrote["metrics"] - metrics, "progress_ticks": wrote["ticks"] - step, "log_lines": wrote["lines"] - log},
        "locked": sum("locked" in e for s in seen.values() for e in s.get("errors", [])),
        "reader_errors": sum(s.get("n_errors", 0) for s in seen.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--cli", type=int, default=2, help="CLI reader processes")
    ap.add_argument("--child", choices=sorted(CHILDREN))
    ap.add_argument("--home")
    ap.add_argument("--run")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.child:
        Path(a.out).write_text(json.dumps(CHILDREN[a.child](Path(a.home), a.run, a.seconds)))
        return
    with tempfile.TemporaryDirectory() as home:
        print(json.dumps(soak(Path(home), a.seconds, a.cli), indent=1))


if __name__ == "__main__":
    main()
