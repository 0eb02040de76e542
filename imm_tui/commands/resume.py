"""imm resume RUN [--set KEY=VALUE]... [--home DIR] [--detach]: continue a run from its first
unfinished stage, optionally with changed memory settings (batch sizes, devices: the settings
that do not change what finished stages mean; e.g. after running out of memory)."""
from __future__ import annotations

from . import add_run_arguments


def add_parser(sub) -> None:
    p = sub.add_parser("resume", help="continue a run from its first unfinished stage", description=__doc__)
    add_run_arguments(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a memory setting first, e.g. --set sft.batch_size=8 (repeatable)")
    p.add_argument("--detach", action="store_true", help="continue in a detached engine process")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine import api

    from .run import report

    detail = api.run_detail(args.run_id, home=args.home)
    print(f"run {detail.summary.id}", flush=True)
    if all(s.status == api.StageStatus.DONE for s in detail.stages):
        print("every stage is done; nothing to resume")
        return 0
    return report(api.resume(detail.summary.id, home=args.home, detach=args.detach, overrides=args.overrides), args.home)
