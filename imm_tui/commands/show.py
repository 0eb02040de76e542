"""imm show RUN [--format table|json|csv|md] [--home DIR]"""
from __future__ import annotations

from . import add_run_arguments, open_run


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="a run's results (and, as JSON, its config and stages)", description=__doc__)
    add_run_arguments(p)
    p.add_argument("--format", choices=("table", "json", "csv", "md"), default="table")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.results_table import render
    from .ls import live_status, progress

    store, row = open_run(args)
    stages = store.stages(row["id"])
    if args.format == "table":
        done, where = progress(stages)
        print(f"run {row['id']}  status {live_status(row)}  method {row['method']}  stages {done}  next {where}")
    print(render(args.format, row, stages, store.metrics(row["id"])))
    return 0
