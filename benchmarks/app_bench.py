"""The app's responsiveness: import time of imm_tui.app, time to the first screen with 200 runs in
the database (the installed `imm --home` in tmux, and a headless Pilot launch, each a fresh
process), key-press latency while an engine-like writer appends 2,000 log lines a second to the
open run's engine.log (its Progress tab follows it): tab switches, a results redraw and log
scrolling, each from the key press to the first drawn frame that shows its effect, and the app's
memory along a minute of that.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/app_bench.py [--minutes 1] [--launches 5]

Prints a table, writes benchmarks/out/app_bench.json and the "## App" section of RESULTS.md.
Targets: first screen < 1 s, key latency < 100 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path[:0] = [str(PROJECT), str(PROJECT / "tests"), str(HERE)]

from app_fixtures import RUN_DONE, make_snapshot_home  # noqa: E402
from results_md import write_section  # noqa: E402

RUNS = 200
LINES_PER_S = 2000
IMM = Path(sys.executable).parent / "imm"


def make_home(path: Path) -> Path:
    """The snapshot home plus copies of its finished run (rows, stages, metrics, verdicts): RUNS runs."""
    from engine.runstate.store import Store

    home = make_snapshot_home(path)
    store = Store(home)
    db = store.db
    run = next(db["runs"].rows_where("id = ?", [RUN_DONE]))
    children = {t: list(db[t].rows_where("run_id = ?", [RUN_DONE])) for t in ("stages", "metrics", "verdicts")}
    with db.conn:
        for i in range(RUNS - db["runs"].count):
            run_id = f"bench-{i:03d}-20261001-000000-{i:04x}"
            db["runs"].insert({**run, "id": run_id, "created": run["created"] - 3600 * (i + 1)})
            for table, rows in children.items():
                db[table].insert_all({**r, "run_id": run_id} for r in rows)
    db.conn.close()
    return home


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def import_seconds(n: int) -> dict:
    code = ("import sys, time; t = time.perf_counter(); import imm_tui.app; "
            "print(time.perf_counter() - t, 'torch' in sys.modules, 'numpy' in sys.modules)")
    times, heavy = [], False
    for _ in range(n):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT).stdout.split()
        times.append(float(out[0]))
        heavy = heavy or out[1] == "True" or out[2] == "True"
    return {"median_s": statistics.median(times), "runs": n, "imports_torch_or_numpy": heavy}


def tmux_first_screen(home: Path, n: int) -> dict | None:
    """Wall time from starting `imm --home` in an 80x24 tmux pane to a run id on screen."""
    if shutil.which("tmux") is None or not IMM.exists():
        return None
    times = []
    for i in range(n):
        name = f"imm-bench-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        subprocess.run(["tmux", "new-session", "-d", "-x", "80", "-y", "24", "-s", name,
                        f"env TERM=xterm-256color {IMM} --home {home}"], check=True)
        try:
            while True:
                screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
                if "bench-000" in screen or "tiny-arith-2026110" in screen:
                    times.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"imm never showed its runs:\n{screen}")
                time.sleep(0.01)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    return {"median_s": statistics.median(times), "max_s": max(times), "runs": n}


PILOT_CHILD = """
import asyncio, sys, time
t0 = time.perf_counter()
from imm_tui.app import ImmApp
from imm_tui.screens.runs import RunsScreen
async def main():
    app = ImmApp(sys.argv[1])
    async with app.run_test(size=(80, 24)) as pilot:
        while not (isinstance(app.screen, RunsScreen) and app.screen.query_one('#runs').row_count >= {runs}):
            await asyncio.sleep(0.002)
        print(time.perf_counter() - t0)
asyncio.run(main())
"""


def pilot_first_screen(home: Path, n: int) -> dict:
    """A fresh process: interpreter start, imports, app start, first poll, {RUNS} rows in the table."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PILOT_CHILD.replace("{runs}", str(RUNS)), str(home)],
                             capture_output=True, text=True, check=True, cwd=PROJECT).stdout
        times.append(time.perf_counter() - t0)
        float(out.strip())
    return {"median_s": statistics.median(times), "max_s": max(times), "runs": n}


def rss_mib() -> tuple[float, float]:
    status = Path("/proc/self/status").read_text().splitlines()
    get = lambda key: next(int(line.split()[1]) for line in status if line.startswith(key)) / 1024  # noqa: E731
    return get("VmRSS:"), get("VmHWM:")


class LogWriter(threading.Thread):
    """Appends LINES_PER_S engine-like lines a second to a log, in 10 ms batches."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.stop_flag, self.lines = path, threading.Event(), 0

    def run(self) -> None:
        batch = LINES_PER_S // 100
        with open(self.path, "a") as f:
            next_t = time.perf_counter()
            while not self.stop_flag.is_set():
                f.write("".join(f"{time.strftime('%H:%M:%S')} [iter 1] sft: step {self.lines + i} loss 0.{i:03d} "
                                f"tokens/s 5400 [bold]x[/foo]\n" for i in range(batch)))
                f.flush()
                self.lines += batch
                next_t += 0.01
                time.sleep(max(0.0, next_t - time.perf_counter()))


# The keys pressed in turn, every 0.5 s, and what the first frame that answers each must show
# (checked when the frame is drawn): tab switches (the figure that has a target), the results
# table's next metric (redraws the table and the plot), and scrolling the followed log up (pausing
# it) and End (following again).
KEYS = ("3", "k", "1", "pageup", "end")
TAB_KEYS = {"3": "results", "1": "progress"}
UNANSWERED_S = 3.0


def answered(app, key: str, before: object = None) -> bool:
    """Does the screen as it is drawn now show the answer to `key` (`before`: the metric shown
    before k was pressed)?"""
    from textual.widgets import TabbedContent

    screen = app.screen
    if key in TAB_KEYS:
        tab = TAB_KEYS[key]
        return (screen.query_one(TabbedContent).active == tab
                and bool(screen.query_one(f"TabPane#{tab}").region))  # laid out, on screen
    if key == "k":
        return screen.query_one("ResultsPane").metric != before
    log = screen.query_one("TailLog")
    return (not log.following) if key == "pageup" else log.following


async def key_latency(home: Path, seconds: float) -> dict:
    """Open the finished run (Progress tab, following its log), start the writer, then press
    3 (Results), k (next pass@k), 1 (Progress), PageUp (log scrolls up, pauses), End (follows)
    in turn, one every 0.5 s. Latency: from the key press to the first frame drawn (the app's
    _display, as a terminal would get it) that shows the key's effect."""
    from imm_tui.app import ImmApp

    app = ImmApp(home)
    pending: dict = {}  # key, t0, and the frame time once answered
    display = app._display

    def drawn(screen, renderable):
        display(screen, renderable)
        if pending and "t" not in pending and answered(app, pending["key"], pending["before"]):
            pending["t"] = time.perf_counter()

    app._display = drawn
    writer = LogWriter(home / "runs" / RUN_DONE / "engine.log")
    by_key: dict[str, list[float]] = {}
    unanswered: dict[str, int] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.5)
        app.open_run(RUN_DONE)
        await pilot.pause(1.0)
        rss_start = rss_mib()[0]
        rss_series = []
        writer.start()
        t_start = time.perf_counter()
        t_end = t_start + seconds
        i = 0
        while time.perf_counter() < t_end:
            key = KEYS[i % len(KEYS)]
            i += 1
            pending.clear()
            before = app.screen.query_one("ResultsPane").metric if key == "k" else None
            pending.update(key=key, before=before, t0=time.perf_counter())
            app.simulate_key(key)
            while "t" not in pending and time.perf_counter() - pending["t0"] < UNANSWERED_S:
                await asyncio.sleep(0.0005)
            if "t" in pending:
                by_key.setdefault(key, []).append(pending["t"] - pending["t0"])
            else:  # not shown within UNANSWERED_S: counted apart, not as a latency
                unanswered[key] = unanswered.get(key, 0) + 1
            if i % (len(KEYS) * 4) == 0:
                rss_series.append((round(time.perf_counter() - t_start), round(rss_mib()[0], 1)))
            await asyncio.sleep(0.5)
        writer.stop_flag.set()
        rss_end, hwm = rss_mib()
    writer.join()
    latencies = [v for k in TAB_KEYS for v in by_key.get(k, [])]
    stats = lambda v: {"presses": len(v), "median_ms": 1000 * statistics.median(v),  # noqa: E731
                       "p95_ms": 1000 * pct(v, 0.95), "max_ms": 1000 * max(v)}
    return {**stats(latencies), "log_lines_written": writer.lines,
            "lines_per_s": writer.lines / seconds, "rss_start_mib": rss_start, "rss_end_mib": rss_end, "rss_peak_mib": hwm,
            "rss_series": rss_series, "seconds": seconds,
            "by_tab": {TAB_KEYS[k]: stats(by_key[k]) for k in TAB_KEYS if k in by_key},
            "by_key": {k: stats(v) for k, v in by_key.items()}, "unanswered": unanswered}


def section(data: dict) -> str:
    imp, tm, pl, keys = data["import"], data["tmux"], data["pilot"], data["keys"]
    rows = [("import imm_tui.app (median)", f"{imp['median_s'] * 1000:.0f} ms",
             "no torch / numpy" if not imp["imports_torch_or_numpy"] else "IMPORTS torch or numpy")]
    if tm:
        rows.append((f"first screen, `imm --home` in tmux, {RUNS} runs (median of {tm['runs']})",
                     f"{tm['median_s']:.2f} s (max {tm['max_s']:.2f})", "target < 1 s"))
    rows.append((f"first screen, Pilot, fresh process, {RUNS} runs (median of {pl['runs']})",
                 f"{pl['median_s']:.2f} s (max {pl['max_s']:.2f})", "target < 1 s"))
    rows.append((f"key latency, tab switch, log at {keys['lines_per_s']:.0f} lines/s ({keys['presses']} presses)",
                 f"median {keys['median_ms']:.0f} ms, p95 {keys['p95_ms']:.0f} ms", "target < 100 ms"))
    for tab, v in keys["by_tab"].items():
        rows.append((f"... switching to the {tab} tab", f"median {v['median_ms']:.0f} ms, p95 {v['p95_ms']:.0f} ms", ""))
    for key, what in (("k", "`k` on Results (table and plot redrawn)"), ("pageup", "`PageUp` on the log (pauses)"),
                      ("end", "`End` on the log (follows again)")):
        missed = keys.get("unanswered", {}).get(key, 0)
        if key in keys.get("by_key", {}):
            v = keys["by_key"][key]
            rows.append((f"key latency, {what} ({v['presses']} presses)",
                         f"median {v['median_ms']:.0f} ms, p95 {v['p95_ms']:.0f} ms",
                         "target < 100 ms" + (f"; {missed} more never shown within {UNANSWERED_S:.0f} s" if missed else "")))
        elif missed:
            rows.append((f"key latency, {what}", f"never shown within {UNANSWERED_S:.0f} s ({missed} presses)", ""))
    rows.append((f"RSS after {keys['seconds']:.0f} s of that ({keys['log_lines_written']:,} lines)",
                 f"{keys['rss_end_mib']:.0f} MiB (start {keys['rss_start_mib']:.0f}, peak {keys['rss_peak_mib']:.0f})",
                 f"+{keys['rss_end_mib'] - keys['rss_start_mib']:.0f} MiB over the run"))
    if keys.get("rss_series"):
        rows.append(("RSS along the run (s: MiB)", ", ".join(f"{t}: {m:.0f}" for t, m in keys["rss_series"]), ""))
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## App: start-up, key latency under log load, memory

`benchmarks/app_bench.py` ({data['when']}, {data['cpus']} CPUs, load average {data['load']:.1f} at the
start; the machine was shared, so figures are upper bounds). The home holds {RUNS} runs.

| measure | value | note |
|---|---|---|
{table}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long the log load runs")
    parser.add_argument("--launches", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = make_home(Path(tmp) / "home")
        data = {"when": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
        data["import"] = import_seconds(args.launches)
        data["tmux"] = tmux_first_screen(home, args.launches)
        data["pilot"] = pilot_first_screen(home, args.launches)
        data["keys"] = asyncio.run(key_latency(home, 60 * args.minutes))
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "app_bench.json").write_text(json.dumps(data, indent=2) + "\n")
    text = section(data)
    print(text)
    write_section(text)


if __name__ == "__main__":
    main()
