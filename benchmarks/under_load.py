"""The test suite under CPU load: a busy-loop process on every core the suite may use, and the
README's test command (`python -m pytest -q`) run N times in a row beside them, with IMM_UNDER_LOAD=1 (the
tests marked slow_under_load run only then).

    .venv/bin/python benchmarks/under_load.py [--runs 3] [--busy N] [--pytest-args "-m 'not slow'"] [--no-write]

Every run's pass / fail / error / skip counts (from pytest's closing line), its wall time, and the
load: the 1-minute load average at its start and end, and the CPU the busy loops got over it (in
cores). A run passes when pytest exits 0. Printed as a table and written to
benchmarks/out/under_load.json; exit status 0 only when every run passed. The busy loops are
killed when the script ends, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from e2e_bench import OUT, ROOT, loadavg, machine  # benchmarks/ is on sys.path

BUSY_LOOP = [sys.executable, "-c", "while True: pass"]
SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counts(output: str) -> dict[str, int]:
    """pytest's closing line (`3 failed, 120 passed, 2 skipped in 80.1s`) as counts."""
    found = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "deselected": 0}
    lines = [line for line in output.splitlines() if SUMMARY.search(line) and " in " in line]
    for number, word in SUMMARY.findall(lines[-1] if lines else ""):
        key = "errors" if word.startswith("error") else word
        found[key] = found.get(key, 0) + int(number)
    return found


def run_suite(pytest_args: list[str], busy: list[subprocess.Popen], log: Path) -> dict:
    cpu_before = sum(cpu_seconds(p.pid) for p in busy)
    load_start, start = loadavg()[0], time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", *pytest_args], cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, "IMM_UNDER_LOAD": "1"})
    wall = time.monotonic() - start
    busy_cores = (sum(cpu_seconds(p.pid) for p in busy) - cpu_before) / wall
    output = log.read_text(errors="replace")
    failed = [line.split(" - ")[0].removeprefix("FAILED ").removeprefix("ERROR ")
              for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return {"exit": proc.returncode, "passed_run": proc.returncode == 0, **counts(output), "wall_s": round(wall, 1),
            "load_start": load_start, "load_end": loadavg()[0], "busy_loops_cores": round(busy_cores, 2),
            "failures": failed, "log": str(log.relative_to(ROOT))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="suite runs in a row (3)")
    parser.add_argument("--busy", type=int, default=len(os.sched_getaffinity(0)),
                        help="busy-loop processes (default: one per usable core)")
    parser.add_argument("--pytest-args", default="", help="more arguments for pytest, e.g. \"tests/test_app_shell.py\"")
    parser.add_argument("--no-write", action="store_true", help="print only; write no JSON")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    pytest_args = shlex.split(args.pytest_args)
    busy = [subprocess.Popen(BUSY_LOOP) for _ in range(args.busy)]
    runs = []
    try:
        for n in range(1, args.runs + 1):
            runs.append({"run": n, **run_suite(pytest_args, busy, OUT / f"under_load_{n}.log")})
            r = runs[-1]
            print(f"run {n}: exit {r['exit']}, {r['passed']} passed, {r['failed']} failed, {r['errors']} errors, "
                  f"{r['wall_s']} s", flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()

    header = ["run", "result", "passed", "failed", "errors", "skipped", "wall s", "load start", "load end", "busy cores"]
    rows = [[r["run"], "pass" if r["passed_run"] else "FAIL", r["passed"], r["failed"], r["errors"], r["skipped"],
             r["wall_s"], r["load_start"], r["load_end"], r["busy_loops_cores"]] for r in runs]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(line, widths)))
    for r in runs:
        for test in r["failures"]:
            print(f"run {r['run']} failed: {test}")
    report = {"command": [sys.executable, "-m", "pytest", "-q", *pytest_args], "busy_loops": args.busy,
              "cores": len(os.sched_getaffinity(0)), "machine": machine(), "runs": runs,
              "all_passed": all(r["passed_run"] for r in runs)}
    if not args.no_write:
        (OUT / "under_load.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"written: {(OUT / 'under_load.json').relative_to(ROOT)}")
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
