"""The tiny default on a busy machine: `imm run presets/tiny-arith.toml` alone and next to one
competing CPU-bound process, with the engine's old thread settings and with its current ones.

    .venv/bin/python benchmarks/busy_bench.py [--repeats 1] [--limit-s 1200] [--no-write]

Settings compared (issue 11, "Shared machines"):
- before: what the engine did until now, 2 torch threads on the 2 cores (`--set threads=2`) and
  libgomp's default wait (GOMP_SPINCOUNT=300000, what it uses when nothing is set);
- after: the engine's defaults, `threads = "auto"` (the cores other processes leave free, looked at
  before each stage) and the short wait engine.cpu_threads puts in the environment;
- wait (optional): 2 threads with the short wait, what a run that started on an idle machine gets
  when the competitor comes later.
The competitor is `python -c "while True: pass"`, started a second before the run and killed after
it: one core's worth of load, which keeps both cores busy whenever the run uses two threads.

Every run is the real command line (benchmarks/e2e_bench.py's `run_once`) in a fresh home whose
models/ links to one warm base model, so no run builds. OMP_NUM_THREADS is removed from the runs'
environment: it would fix the thread count. Slow-down = wall with the competitor / wall alone, per
setting (medians over the repeats). Target: the current settings at most 2.5x slower with one
competitor on 2 cores. A run past --limit-s is killed and reported as "> limit".

Results: printed, benchmarks/out/busy_bench.json, and the "Busy machine (tiny default)" section of
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from e2e_bench import OUT, PRESET, ROOT, loadavg, machine, run_once  # benchmarks/ is on sys.path
from results_md import RESULTS, write_section

SECTION = "## Busy machine (tiny default)"
TARGET = 2.5
SETTINGS = {
    "before": {"sets": ["threads=2"], "env": {"GOMP_SPINCOUNT": "300000"},
               "what": "2 threads, libgomp's default wait (the engine until now)"},
    "after": {"sets": [], "env": {}, "what": 'threads = "auto", GOMP_SPINCOUNT=1000 (the engine\'s defaults)'},
    "wait": {"sets": ["threads=2"], "env": {},
             "what": "2 threads, GOMP_SPINCOUNT=1000 (the short wait alone, as when a competitor comes mid-run)"},
}
COMPETITOR = [sys.executable, "-c", "while True: pass"]


def run_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **extra}


def warm_models(tmp: Path) -> Path:
    """A models/ folder holding the builtin base (the shipped copy, installed once)."""
    home = tmp / "base"
    subprocess.run([sys.executable, "-c", f"from engine.train.builtin import ensure_builtin; "
                    f"ensure_builtin({str(home)!r}, 'tiny-arith')"], env=run_env({}), cwd=ROOT, check=True)
    return home / "models"


def one_run(tmp: Path, models: Path, name: str, setting: str, busy: bool, limit_s: float) -> dict:
    home = tmp / name
    home.mkdir()
    (home / "models").symlink_to(models, target_is_directory=True)
    spec = SETTINGS[setting]
    competitor = subprocess.Popen(COMPETITOR) if busy else None
    try:
        if competitor:
            time.sleep(1.0)
        start = loadavg()
        try:
            r = run_once(home, spec["sets"], OUT / f"busy_{name}.out", env=run_env(spec["env"]), limit_s=limit_s)
        except TimeoutError:
            return {"setting": setting, "busy": busy, "wall_s": None, "killed_after_s": limit_s, "load_at_start": start}
    finally:
        if competitor:
            competitor.kill()
            competitor.wait()
    return {"setting": setting, "busy": busy, "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "load_at_start": start,
            "load_1min_mean_during": r["load_1min_mean_during"],
            "stage_seconds": {f"{s['iteration']}:{s['stage']}": s["seconds"] for s in r["stages"]},
            "thread_choices": r["thread_choices"],
            "results_table_md": r["results_table_md"]}


def median_wall(runs: list[dict]) -> float | None:
    walls = [r["wall_s"] for r in runs]
    return None if None in walls else round(statistics.median(walls), 1)


def summarize(runs: list[dict], limit_s: float) -> list[dict]:
    rows = []
    for setting, spec in SETTINGS.items():
        if not any(r["setting"] == setting for r in runs):
            continue
        alone = median_wall([r for r in runs if r["setting"] == setting and not r["busy"]])
        busy = median_wall([r for r in runs if r["setting"] == setting and r["busy"]])
        slowdown = None if alone is None or busy is None else round(busy / alone, 2)
        at_least = None if busy is not None or alone is None else round(limit_s / alone, 1)
        rows.append({"setting": setting, "what": spec["what"], "alone_s": alone, "busy_s": busy,
                     "slowdown": slowdown, "slowdown_at_least": at_least,
                     "target_met": slowdown is not None and slowdown <= TARGET})
    return rows


def fmt_s(value: float | None, limit_s: float) -> str:
    return f"> {limit_s:.0f}" if value is None else f"{value:.1f}"


def fmt_slowdown(row: dict) -> str:
    if row["slowdown"] is not None:
        return f"{row['slowdown']:.2f}x"
    return f"> {row['slowdown_at_least']}x" if row["slowdown_at_least"] else "?"


def section(data: dict) -> str:
    m, limit = data["machine"], data["limit_s"]
    lines = [SECTION, "",
             "`benchmarks/busy_bench.py` (issue 11): the real `imm run presets/tiny-arith.toml` (fresh home, warm base model,",
             "no build), alone and next to one competing CPU-bound process (`python -c \"while True: pass\"`, started",
             "a second before, killed after). OMP_NUM_THREADS unset for the runs. Slow-down = wall with the",
             f"competitor / wall alone; medians of {data['repeats']} run(s) each. Machine: {m['nproc']} CPU cores",
             f"({m['cpu_model']}), torch {m['torch']}; shared with other engineers' jobs (load average at the start",
             f"of each run below). Measured {data['date']}.", "",
             f"Target: at most {TARGET}x slower with one competitor on 2 cores.", "",
             "| setting | alone s | with a competitor s | slow-down | target |", "|---|---:|---:|---:|---|"]
    for r in data["summary"]:
        met = "met" if r["target_met"] else ("missed" if r["setting"] != "before" else "")
        lines.append(f"| {r['setting']}: {r['what']} | {fmt_s(r['alone_s'], limit)} | {fmt_s(r['busy_s'], limit)} | "
                     f"{fmt_slowdown(r)} | {met} |")
    lines += ["", "Runs (setting, competitor, wall s, load average 1/5/15 at start; threads the engine chose):", ""]
    for r in data["runs"]:
        choices = "; ".join(dict.fromkeys(r.get("thread_choices", []))) or "-"
        lines.append(f"- {r['setting']}, {'with' if r['busy'] else 'without'} competitor: "
                     f"{fmt_s(r['wall_s'], limit)} s, load {'/'.join(f'{x:.2f}' for x in r['load_at_start'])}; {choices}")
    for r in data.get("replaced", []):
        lines.append(f"- replaced by a rerun (another job took the cores during it): {r['name']}, {fmt_s(r['wall_s'], limit)} s, "
                     f"load {'/'.join(f'{x:.2f}' for x in r['load_at_start'])}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="runs of each (setting, competitor) pair (default 1)")
    ap.add_argument("--limit-s", type=float, default=1200, help="kill a run after this many seconds (default 1200)")
    ap.add_argument("--settings", default="before,after", help="which settings to run (default before,after; also: wait)")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--rerun", metavar="SETTING-alone|busy-I", action="append", default=[],
                    help="run only this run and merge it into the last busy_bench.json: it replaces a run of that name "
                         "(one another job disturbed; kept under `replaced`) or is added")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    info = machine()
    old = json.loads((OUT / "busy_bench.json").read_text()) if args.rerun else None
    names = args.rerun or [f"{setting}-{kind}-{i}" for i in range(args.repeats) for setting in args.settings.split(",")
                           for kind in ("alone", "busy")]
    tmp = Path(tempfile.mkdtemp(prefix="imm-busy-"))
    runs = []
    try:
        models = warm_models(tmp)
        for name in names:
            setting, kind, _ = name.split("-")
            print(f"{name} (load {loadavg()}) ...", flush=True)
            runs.append({"name": name, **one_run(tmp, models, name, setting, kind == "busy", args.limit_s)})
            print(f"  {fmt_s(runs[-1]['wall_s'], args.limit_s)} s; {runs[-1].get('thread_choices', '')}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    replaced = []
    if old:
        fresh = {r["name"]: r for r in runs}
        replaced = old.get("replaced", []) + [r for r in old["runs"] if r["name"] in fresh]
        runs = [fresh.get(r["name"], r) for r in old["runs"]] + [r for r in runs if r["name"] not in
                                                                   {o["name"] for o in old["runs"]}]
        args.repeats, args.limit_s = old["repeats"], old["limit_s"]
    data = {"date": time.strftime("%Y-%m-%d %H:%M"), "preset": PRESET, "repeats": args.repeats, "limit_s": args.limit_s,
            "machine": info, "runs": runs, "replaced": replaced, "summary": summarize(runs, args.limit_s)}
    (OUT / "busy_bench.json").write_text(json.dumps(data, indent=1))
    print(f"\n{'setting':<8} {'alone s':>8} {'busy s':>8} {'slow-down':>10}")
    for r in data["summary"]:
        print(f"{r['setting']:<8} {fmt_s(r['alone_s'], args.limit_s):>8} {fmt_s(r['busy_s'], args.limit_s):>8} {fmt_slowdown(r):>10}")
    print(f"\nJSON: {OUT / 'busy_bench.json'}")
    if not args.no_write:
        write_section(section(data))
        print(f"section {SECTION!r} written to {RESULTS}")


if __name__ == "__main__":
    main()
