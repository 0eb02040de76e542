"""imm ls [--home DIR]: the runs in the home folder, newest first."""
from __future__ import annotations

from . import HOME_HELP

import time


def add_parser(sub) -> None:
    p = sub.add_parser("ls", help="list runs", description=__doc__)
    p.add_argument("--home", help=HOME_HELP)
    p.set_defaults(func=run)


def live_status(run: dict) -> str:
    """The stored status, except that a 'running' run whose engine is gone shows as interrupted."""
    from engine.runstate.launcher import pid_alive

    if run["status"] == "running" and not pid_alive(run["pid"]):
        return "interrupted"
    return run["status"]


def progress(stages: list[dict]) -> tuple[str, str]:
    done = sum(s["status"] == "done" for s in stages)
    current = next((s for s in stages if s["status"] != "done"), None)
    where = f"iter {current['iteration']} {current['stage']}" if current else "-"
    return f"{done}/{len(stages)}", where


def run(args) -> int:
    from engine.results_table import render_text
    from engine.runstate.paths import home_dir
    from engine.runstate.store import Store

    store = Store(home_dir(args.home))
    body = []
    for r in store.runs():
        done, where = progress(store.stages(r["id"]))
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        body.append([r["id"], live_status(r), r["method"], done, where, created])
    if not body:
        print(f"no runs in {store.home}")
        return 0
    print(render_text(["run", "status", "method", "stages", "next", "created"], body))
    return 0
