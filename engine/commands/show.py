"""imm show RUN [--format table|json|csv|md] [--home DIR]"""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="a run's results (and, as JSON, its config and stages)", description=__doc__)
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--format", choices=("table", "json", "csv", "md"), default="table")
    p.add_argument("--home", help="home folder (default $IMM_HOME or ./imm-runs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import RunStateError
    from ..report import render
    from ..store import Store, home_dir
    from .ls import live_status, progress

    store = Store(home_dir(args.home))
    row = store.run(args.run_id)
    if row is None:
        raise RunStateError(f"no run {args.run_id!r} in {store.home}")
    stages = store.stages(row["id"])
    if args.format == "table":
        done, where = progress(stages)
        print(f"run {row['id']}  status {live_status(row)}  method {row['method']}  stages {done}  next {where}")
    print(render(args.format, row, stages, store.metrics(row["id"])))
    return 0
