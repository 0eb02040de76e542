"""imm stop RUN [--home DIR]: the engine stops before its next stage (a safe point)."""
from __future__ import annotations

from . import add_run_arguments, open_run


def add_parser(sub) -> None:
    p = sub.add_parser("stop", help="stop a running run at its next safe point", description=__doc__)
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.errors import RunStateError
    from engine.runstate.launcher import pid_alive, request_stop
    from engine.runstate.paths import RunPaths

    _, row = open_run(args)
    if row["status"] != "running" or not pid_alive(row["pid"]):
        raise RunStateError(f"run {row['id']} is not running (status {row['status']})")
    request_stop(RunPaths(row["run_dir"]))
    print(f"run {row['id']}: stop requested; the engine (pid {row['pid']}) stops before its next stage")
    return 0
