"""imm sweep RUN --iter T --alpha 0.1,0.3,0.5 --drop 0,0.2 [--seed S] [--subset N] [--keep-weights]
imm sweep RUN --iter T --list | --adopt TRIAL

Re-merge a finished iteration with other alpha / DARE p values and evaluate each trial on the
run's tasks, without re-running generation or SFT. --adopt makes a trial the iteration's merge;
`imm resume RUN` then continues from it.
"""
from __future__ import annotations

import argparse

from . import add_run_arguments, open_run


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: comma-separated numbers like 0.1,0.3,0.5") from None


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="alpha / drop-rate sweep on a finished iteration", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p)
    p.add_argument("--iter", dest="iteration", type=int, required=True, metavar="T")
    p.add_argument("--alpha", type=float_list, help="alphas to try (default: the run's)")
    p.add_argument("--drop", type=float_list, help="DARE drop rates p to try (default: the run's)")
    p.add_argument("--seed", type=int, help="DARE mask seed (default: the run's merge seed for iteration T)")
    p.add_argument("--subset", type=int, default=0, metavar="N", help="evaluate on the first N questions per task")
    p.add_argument("--keep-weights", action="store_true", help="keep each trial's merged checkpoint on disk")
    p.add_argument("--list", action="store_true", help="show the iteration's trials so far")
    p.add_argument("--adopt", type=int, metavar="TRIAL", help="make this trial the iteration's merge")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.errors import UserError
    from engine.results_table import render_text
    from engine.sweep import adopt, queue_sweep, trial_table, work_queue

    store, row = open_run(args)
    if args.subset < 0:
        raise UserError(f"--subset: got {args.subset}; allowed: 0 (all) or a positive number of questions")
    if args.adopt is not None:
        adopt(store, row["id"], args.iteration, args.adopt)
    elif not args.list:
        import json

        merge = json.loads(row["config"])["merge"]
        queue_sweep(store, row["id"], args.iteration, args.alpha or [merge["alpha"]], args.drop or [merge["drop_rate"]],
                    seed=args.seed, subset=args.subset, keep_weights=args.keep_weights)
        work_queue(store, row["id"], log=print)
    print(render_text(*trial_table(store.trials(row["id"], args.iteration))))
    return 0
