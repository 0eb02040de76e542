"""`imm grade TASK FILE.jsonl`: re-grade saved completions.

Each input record holds the task's gold fields as stored (e.g. gsm8k: question, answer) plus
`completion`, or, as in the samples a run saves (samples.jsonl, eval_*.jsonl), the canonical
answer as `gold`; each output line is that record with `extracted` and `correct` added.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("grade", help="grade completions in a JSONL file against a task's gold answers",
                              description=__doc__)
    p.add_argument("task", help="a task name (see the README), or a custom task's name with --spec")
    p.add_argument("file", type=Path, help="JSONL: the task's gold fields plus `completion` per line")
    p.add_argument("--spec", help='custom task table as JSON, e.g. \'{"kind": "numeric", "path": "x.jsonl"}\'')
    p.add_argument("--out", type=Path, help="write graded records here instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.tasks import get_task
    from engine.tasks.base import Example
    from engine.tasks.jsonl_task import BenchmarkTask
    from engine.tasks.sources import read_jsonl

    spec = parse_spec_arg(args.spec)
    task = get_task(args.task, spec)
    records = read_jsonl(task.name, args.file, "input")
    graded = []
    for i, record in enumerate(records):
        if "completion" not in record:
            raise UserError(f"{args.file}: record {i + 1} has no field 'completion'")
        if "gold" in record:
            example = Example(id=str(i), question=str(record.get("question", "")), answer=str(record["gold"]))
        elif isinstance(task, BenchmarkTask):
            example = task.example(record, i, where=str(args.file))
        else:
            raise UserError(f"{args.file}: record {i + 1} has no field 'gold'; allowed: records with 'gold' "
                            f"(task {args.task!r} is generated, so it has no stored gold fields)")
        extracted, correct = task.grade(str(record["completion"]), example)
        graded.append({**record, "extracted": extracted, "correct": correct})
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in graded)
    if args.out:
        args.out.write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    n_correct = sum(r["correct"] for r in graded)
    print(f"{task.name}: {n_correct}/{len(graded)} correct ({100 * n_correct / len(graded):.1f}%)", file=sys.stderr)
    return 0


def parse_spec_arg(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--spec: not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(spec, dict):
        raise UserError(f"--spec: expected a JSON object, got {text!r}")
    return spec
