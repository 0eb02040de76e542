"""The engine process: `python -m engine run RUN [--home DIR]` runs a run's pending stages;
`python -m engine sweep RUN [--home DIR]` works through the run's queued sweep trials;
`python -m engine adopt RUN --iter T --trial ID` makes a trial iteration T's merge. This is what
`imm run --detach`, `imm resume`, sweeps and the app start; users call `imm` (imm_tui.cli).

The process ignores SIGHUP (an SSH session that drops must not end a run: SIGTERM and `imm stop`
do that), and its console is only an echo of the run's log (engine.console)."""
import argparse
import os
import signal
import sys

from .console import say
from .errors import RunStateError, UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=("run", "sweep", "adopt"))
    parser.add_argument("run_id", metavar="RUN")
    parser.add_argument("--home", help="home folder of the database and runs (default $IMM_HOME, else ./imm-runs)")
    parser.add_argument("--iter", dest="iteration", type=int, help="adopt: the iteration")
    parser.add_argument("--trial", type=int, help="adopt: the sweep trial id")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from .runstate.paths import PRIVATE_UMASK, home_dir
    from .runstate.store import Store

    os.umask(PRIVATE_UMASK)  # logs, samples and checkpoints of the run: owner only
    status: str  # how the job ended: a run's status, or "adopted"
    try:
        store = Store(home_dir(args.home))
        if args.job == "run":
            from .driver import run_engine

            status = run_engine(store, args.run_id)
        elif args.job == "sweep":
            from .sweep import work_queue

            status = work_queue(store, args.run_id)
        else:
            from .sweep import adopt

            adopt(store, args.run_id, args.iteration, args.trial)
            status = "adopted"
    except (UserError, RunStateError) as exc:
        from .plain_text import clean  # the message may quote a file, a model or a log: plain text

        for error in getattr(exc, "errors", [exc]):  # a ConfigError names every wrong field, a line each
            say(f"error: {clean(error)}", sys.stderr)
        return exc.exit_code
    say(f"engine: {args.job} {args.run_id}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
