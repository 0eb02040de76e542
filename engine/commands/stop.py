"""imm stop RUN [--home DIR]: the engine stops before its next stage (a safe point)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("stop", help="stop a running run at its next safe point", description=__doc__)
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--home", help="home folder (default $IMM_HOME or ./imm-runs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import RunStateError
    from ..launcher import pid_alive, request_stop
    from ..runs import RunPaths
    from ..store import Store, home_dir

    store = Store(home_dir(args.home))
    row = store.run(args.run_id)
    if row is None:
        raise RunStateError(f"no run {args.run_id!r} in {store.home}")
    if row["status"] != "running" or not pid_alive(row["pid"]):
        raise RunStateError(f"run {row['id']} is not running (status {row['status']})")
    request_stop(RunPaths(row["run_dir"]))
    print(f"run {row['id']}: stop requested; the engine (pid {row['pid']}) stops before its next stage")
    return 0
