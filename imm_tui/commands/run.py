"""imm run PRESET [--set K=V]... [--home DIR] [--detach] [--dry-run]"""
from __future__ import annotations

import sys

from . import HOME_HELP, print_results


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="start a run from a preset (TOML)", description=__doc__)
    p.add_argument("preset", help="a bundled or saved preset's name (e.g. tiny-arith; `imm presets` lists them) "
                                  "or a preset TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set merge.alpha=0.3 (repeatable)")
    p.add_argument("--home", help=HOME_HELP)
    p.add_argument("--detach", action="store_true", help="start the engine in its own session and return")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan; load no model, write nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine import api

    if args.dry_run:
        print(api.dry_run(args.preset, args.overrides))
        return 0
    started = api.start_run(args.preset, args.overrides, home=args.home, detach=args.detach,
                            on_created=lambda run_id: print(f"run {run_id}", flush=True))
    return report(started, args.home)


def report(started, home) -> int:
    """What `imm run` and `imm resume` print once the engine was started or has ended."""
    if started.pid is not None:
        print(f"engine pid {started.pid}; log {started.log_path}")
        return 0
    print_results(started.run_id, home)
    if started.status == "stopped":
        print(f"stopped; continue with: imm resume {started.run_id}", file=sys.stderr)
    if started.status == "failed":
        from engine import api

        error = api.clean(api.run_detail(started.run_id, home).summary.error or "")
        print(f"failed: {error}\nlog: {started.log_path}; once fixed, continue with: imm resume {started.run_id}",
              file=sys.stderr)
        return 1
    return 0
