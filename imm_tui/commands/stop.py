"""imm stop RUN [--home DIR]: the engine stops at its next safe point."""
from __future__ import annotations

from . import add_run_arguments


def add_parser(sub) -> None:
    p = sub.add_parser("stop", help="stop a running run at its next safe point", description=__doc__)
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from engine import api

    run_id = api.run_detail(args.run_id, home=args.home).summary.id
    pid = api.stop(run_id, home=args.home)
    print(f"run {run_id}: stop requested; the engine (pid {pid}) stops at its next safe point "
          "(after a chunk, at an SFT checkpoint or between stages)")
    return 0
