"""Grading throughput (records/s) over the full GSM8K test and MATH-500 gold sets.

Each record is a gold rationale graded against its own answer (extract + equivalence), as
`imm grade` and the engine's filter stage do. MATH is timed in the main thread (math-verify's
signal timeouts on) and in a worker thread (timeouts off); math-verify's parse cache is cleared
before every repeat. Prints a table, writes benchmarks/out/grading_bench.json and the Grading
section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/grading_bench.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from results_md import write_section  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.tasks import get_task  # noqa: E402
from engine.tasks.math_equiv import parse_answer  # noqa: E402



def gold_pairs(name: str) -> tuple[object, list]:
    task = get_task(name)
    examples = task.load("test")
    if name == "gsm8k":  # the stored rationale, calculator annotations and "#### N" included
        data = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
        raw = [json.loads(line)["answer"] for line in data.open()]
        return task, list(zip(raw, examples))
    return task, [(e.rationale, e) for e in examples]


def time_once(task, pairs, threaded: bool) -> tuple[float, int]:
    parse_answer.cache_clear()

    def grade_all():
        start = time.perf_counter()
        correct = sum(task.grade(c, e)[1] for c, e in pairs)
        return time.perf_counter() - start, correct

    if threaded:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(grade_all).result()
    return grade_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name, threaded in [("gsm8k", False), ("math", False), ("math", True)]:
        task, pairs = gold_pairs(name)
        runs = [time_once(task, pairs, threaded) for _ in range(args.repeats)]
        seconds = statistics.median(s for s, _ in runs)
        rows.append({
            "task": name, "thread": "worker" if threaded else "main", "records": len(pairs),
            "correct": runs[0][1], "median_s": round(seconds, 4), "records_per_s": round(len(pairs) / seconds),
        })
    machine = f"{os.cpu_count()}-core CPU, {platform.python_implementation()} {platform.python_version()}"
    result = {"machine": machine, "repeats": args.repeats, "rows": rows}
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "grading_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = render(result)
    print(table)
    write_grading_section(table)


def render(result: dict) -> str:
    lines = [
        "| task | thread | records | graded correct | median s | records/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['task']} | {r['thread']} | {r['records']} | {r['correct']} | {r['median_s']} | {r['records_per_s']} |")
    return "\n".join(lines)


def write_grading_section(table: str) -> None:
    section = (
        "## Grading\n\n"
        "`benchmarks/grading_bench.py`: gold rationales graded against their own answers (extract +\n"
        "equivalence), median of the repeats, math-verify's parse cache cleared before each.\n"
        f"Machine: {os.cpu_count()}-core CPU (no GPU).\n\n{table}\n"
    )
    write_section(section)


if __name__ == "__main__":
    main()
