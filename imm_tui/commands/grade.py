"""`imm grade TASK FILE.jsonl`: re-grade saved completions.

Each input record holds the task's gold fields as stored (e.g. gsm8k: question, answer) plus
`completion`, or, as in the samples a run saves (samples.jsonl, eval_*.jsonl), the canonical
answer as `gold`; each output line is that record with `extracted` and `correct` added.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("grade", help="grade completions in a JSONL file against a task's gold answers",
                              description=__doc__)
    p.add_argument("task", help="a task name (see the README), or a custom task's name with --spec")
    p.add_argument("file", type=Path, help="JSONL: the task's gold fields plus `completion` per line")
    p.add_argument("--spec", help='custom task table as JSON, e.g. \'{"kind": "numeric", "path": "x.jsonl"}\'')
    p.add_argument("--out", type=Path, help="write graded records here instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine import api

    graded = api.grade_file(args.task, args.file, api.parse_task_spec(args.spec))
    lines = "".join(api.json_line(r) for r in graded)  # model text: no escape sequence reaches the terminal
    if args.out:
        args.out.write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    n_correct = sum(r["correct"] for r in graded)
    print(f"{args.task}: {n_correct}/{len(graded)} correct ({100 * n_correct / len(graded):.1f}%)", file=sys.stderr)
    return 0
