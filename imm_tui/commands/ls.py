"""imm ls [--home DIR]: the runs in the home folder, newest first."""
from __future__ import annotations

import time

from . import HOME_HELP


def add_parser(sub) -> None:
    p = sub.add_parser("ls", help="list runs", description=__doc__)
    p.add_argument("--home", help=HOME_HELP)
    p.set_defaults(func=run)


def where(summary) -> str:
    return f"iter {summary.iteration} {summary.stage}" if summary.stage else "-"


def run(args) -> int:
    from engine import api

    runs = api.list_runs(args.home)
    if not runs:
        print(f"no runs in {api.home_dir(args.home)}")
        return 0
    body = [[r.id, r.status, r.method, f"{r.stages_done}/{r.stages_total}", where(r),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))] for r in runs]
    print(api.render_text(["run", "status", "method", "stages", "next", "created"], body))
    return 0
