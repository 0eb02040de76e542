"""Reliability figures (issue 11), from real runs:

- faults injected / survived: the `fault` test group (pytest -m fault), each test a real engine,
  database or file system with a fault put in (SIGKILL or SIGTERM inside a stage, a full disk on a
  small tmpfs, out of memory, SIGHUP, the console gone, a second engine, a corrupted or newer
  database, a run folder deleted, a half-written config.json) and the checks that nothing finished
  was lost and the run ends as it would have;
- bad inputs tried / refused cleanly: the `bad_input` group (each malformed preset or command line
  exits 2 naming field and value and writes nothing; the hypothesis fuzzers never crash);
- rows lost and reader latency under writer load: benchmarks/soak.py for --soak-seconds;
- slow-down next to a competing CPU-bound process: benchmarks/busy_bench.py (current settings).

Prints a table, writes benchmarks/out/reliability.json and the "Reliability" section of
benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/reliability.py [--soak-seconds 120] [--no-busy]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

from benchmarks.results_md import write_section  # noqa: E402
from benchmarks.soak import soak  # noqa: E402


def test_group(marker: str) -> list[dict]:
    """Run one marked test group; each test's name, outcome and seconds (JUnit XML)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", marker, "-p", "no:cacheprovider",
                        f"--junitxml={xml}", "tests"], cwd=ROOT, check=False)
        cases = ET.parse(xml).getroot().iter("testcase")
        return [{"test": f"{c.get('classname').rsplit('.', 1)[-1]}::{c.get('name')}", "seconds": float(c.get("time")),
                 "outcome": "skipped" if c.find("skipped") is not None
                 else "failed" if c.find("failure") is not None or c.find("error") is not None else "passed"}
                for c in cases]


def busy() -> dict | None:
    """busy_bench.py with the engine's current settings: wall alone and next to a competitor."""
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "busy_bench.py"), "--settings", "after", "--no-write"],
                       cwd=ROOT, check=False)
    path = OUT / "busy_bench.json"
    return json.loads(path.read_text()) if p.returncode == 0 and path.exists() else None


def counts(cases: list[dict]) -> dict:
    return {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}


def section(r: dict) -> str:
    f, b, s = counts(r["faults"]), counts(r["bad_inputs"]), r["soak"]
    lost = sum(s["lost"].values())
    lat = {name: v["latency"] for name, v in s["readers"].items()}
    lines = [
        "## Reliability",
        "",
        "`benchmarks/reliability.py` (issue 11): the `fault` and `bad_input` test groups run for real "
        "(pytest -m ...), the reader soak (benchmarks/soak.py) and the busy-machine run "
        f"(benchmarks/busy_bench.py, current settings). Machine: 2 CPU cores, no GPU; shared with other "
        f"engineers' jobs. Measured {r['date']}.",
        "",
        "| what | figure |",
        "|---|---|",
        f"| faults injected / survived (tests of the `fault` group) | {len(r['faults']) - f['skipped']} / {f['passed']}"
        + (f" ({f['skipped']} skipped)" if f["skipped"] else "") + " |",
        f"| bad inputs tried / refused cleanly (tests of the `bad_input` group) | {len(r['bad_inputs']) - b['skipped']} / {b['passed']} |",
        f"| rows lost under a fast writer ({s['seconds']:.0f} s: {s['writer']['ticks']} progress rows, "
        f"{s['writer']['metrics']} stage-done commits, {s['writer']['lines']} log lines) | {lost} |",
        f"| reader errors (\"database is locked\" among them) | {s['reader_errors']} ({s['locked']}) |",
    ]
    for name, label in (("api", "engine.api pollers: one round of every read"), ("app", "the app's pane reads"),
                        *((k, f"the CLI (`imm show`, `imm ls`, a new process each) #{k[3:]}") for k in lat if k.startswith("cli"))):
        if name in lat and lat[name]["n"]:
            q = lat[name]
            lines.append(f"| {label}: median / p95 / max ms (n) | {q['median_ms']:.1f} / {q['p95_ms']:.1f} / {q['max_ms']:.1f} ({q['n']}) |")
    w = s["writer"]["commit"]
    lines.append(f"| the writer's commits: median / p95 / max ms | {w['median_ms']:.1f} / {w['p95_ms']:.1f} / {w['max_ms']:.1f} |")
    if r["busy"]:
        for row in r["busy"].get("summary", []):
            alone, with_it, ratio = (f"{v:.{d}f}{unit}" if v is not None else "killed at the limit"
                                     for v, d, unit in ((row["alone_s"], 1, " s"), (row["busy_s"], 1, " s"), (row["slowdown"], 2, "x")))
            lines.append(f"| the tiny default next to one busy process ({row['setting']}): alone / with it / slow-down | "
                         f"{alone} / {with_it} / {ratio} |")
    else:
        lines.append("| slow-down next to a busy process | not measured in this run (--no-busy; see \"Busy machine\") |")
    lines += ["", "Fault tests (outcome, seconds):", ""]
    lines += [f"- {c['test']}: {c['outcome']}, {c['seconds']:.1f} s" for c in r["faults"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--soak-seconds", type=float, default=120)
    ap.add_argument("--no-busy", action="store_true", help="skip the busy-machine runs (about 4 minutes)")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    a = ap.parse_args()
    r = {"date": time.strftime("%Y-%m-%d %H:%M"), "faults": test_group("fault"), "bad_inputs": test_group("bad_input")}
    with tempfile.TemporaryDirectory() as home:
        r["soak"] = soak(Path(home), a.soak_seconds, cli=2)
    r["busy"] = None if a.no_busy else busy()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reliability.json").write_text(json.dumps(r, indent=1))
    text = section(r)
    print(text)
    if not a.no_write:
        write_section(text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
