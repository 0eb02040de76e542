"""imm resume RUN [--home DIR] [--detach]: continue a run from its first unfinished stage."""
from __future__ import annotations

from . import add_run_arguments, open_run


def add_parser(sub) -> None:
    p = sub.add_parser("resume", help="continue a run from its first unfinished stage", description=__doc__)
    add_run_arguments(p)
    p.add_argument("--detach", action="store_true", help="continue in a detached engine process")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.runstate.launcher import spawn_detached
    from engine.runstate.paths import RunPaths
    from .run import foreground

    store, row = open_run(args)
    print(f"run {row['id']}", flush=True)
    if all(s["status"] == "done" for s in store.stages(row["id"])):
        print("every stage is done; nothing to resume")
        return 0
    if args.detach:
        paths = RunPaths(row["run_dir"])
        print(f"engine pid {spawn_detached(store.home, row['id'], paths)}; log {paths.log}")
        return 0
    return foreground(store, row["id"])
