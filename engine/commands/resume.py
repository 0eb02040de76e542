"""imm resume RUN [--home DIR] [--detach]: continue a run from its first unfinished stage."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("resume", help="continue a run from its first unfinished stage", description=__doc__)
    p.add_argument("run_id", metavar="RUN", help="run id (or a unique prefix)")
    p.add_argument("--home", help="home folder (default $IMM_HOME or ./imm-runs)")
    p.add_argument("--detach", action="store_true", help="continue in a detached engine process")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import RunStateError
    from ..launcher import spawn_detached
    from ..runs import RunPaths
    from ..store import Store, home_dir
    from .run import foreground

    store = Store(home_dir(args.home))
    row = store.run(args.run_id)
    if row is None:
        raise RunStateError(f"no run {args.run_id!r} in {store.home}")
    print(f"run {row['id']}", flush=True)
    if all(s["status"] == "done" for s in store.stages(row["id"])):
        print("every stage is done; nothing to resume")
        return 0
    if args.detach:
        paths = RunPaths(row["run_dir"])
        print(f"engine pid {spawn_detached(store.home, row['id'], paths)}; log {paths.log}")
        return 0
    return foreground(store, row["id"])
