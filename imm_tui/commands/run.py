"""imm run PRESET [--set K=V]... [--home DIR] [--detach] [--dry-run]"""
from __future__ import annotations

from . import HOME_HELP

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="start a run from a preset (TOML)", description=__doc__)
    p.add_argument("preset", help="preset TOML file, e.g. presets/tiny-arith.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set merge.alpha=0.3 (repeatable)")
    p.add_argument("--home", help=HOME_HELP)
    p.add_argument("--detach", action="store_true", help="start the engine in its own session and return")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan; load no model, write nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.config import resolve
    from engine.runstate.launcher import spawn_detached
    from engine.runstate.paths import home_dir
    from engine.runstate.plan import create_run
    from engine.runstate.store import Store

    cfg = resolve(args.preset, args.overrides)  # rejects bad input before anything is written
    if args.dry_run:
        from engine.dryrun import describe

        print(describe(cfg))
        return 0
    store = Store(home_dir(args.home))
    run_id, paths = create_run(store, cfg, str(args.preset))
    print(f"run {run_id}", flush=True)
    if args.detach:
        pid = spawn_detached(store.home, run_id, paths)
        print(f"engine pid {pid}; log {paths.log}")
        return 0
    return foreground(store, run_id)


def foreground(store, run_id: str) -> int:
    from engine.driver import run_engine
    from engine.results_table import render

    status = run_engine(store, run_id)
    print(render("table", store.run(run_id), store.stages(run_id), store.metrics(run_id)))
    if status == "stopped":
        print(f"stopped; continue with: imm resume {run_id}", file=sys.stderr)
    return 0
