"""imm sweep RUN --iter T --alpha 0.1,0.3,0.5 --drop 0,0.2 [--seed S] [--subset N] [--keep-weights]
imm sweep RUN --iter T --list | --adopt TRIAL

Re-merge a finished iteration with other alpha / DARE p values and evaluate each trial on the
run's tasks, without re-running generation or SFT. --adopt makes a trial the iteration's merge;
`imm resume RUN` then continues from it.
"""
from __future__ import annotations

import argparse

from . import add_run_arguments


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
    p.add_argument("--detach", action="store_true", help="queue the trials for a detached sweep worker and return")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine import api

    run_id = api.run_detail(args.run_id, home=args.home).summary.id
    if args.adopt is not None:
        api.adopt_trial(run_id, args.iteration, args.adopt, home=args.home, log=print)
    elif not args.list:
        merge = api.run_detail(run_id, home=args.home).config["merge"]
        api.start_sweep(run_id, args.iteration, args.alpha or [merge["alpha"]], args.drop or [merge["drop_rate"]],
                        seed=args.seed, subset=args.subset, keep_weights=args.keep_weights, home=args.home,
                        detach=args.detach, log=print)
        if args.detach:
            print(f"trials queued; a detached sweep worker runs them (watch: imm sweep {run_id} --iter {args.iteration} --list)")
    print("alpha = weight of the BASE: theta = alpha * base + (1 - alpha) * (prev + DARE_p(sft - prev)); "
          "the method's alpha table reads the other way round (its alpha 0.1 row is near the base)")
    print(api.render_text(*api.trial_table(api.trials(run_id, args.iteration, home=args.home))))
    return 0
