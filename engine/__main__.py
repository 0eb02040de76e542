"""The engine process: `python -m engine run RUN [--home DIR]` runs a run's pending stages;
`python -m engine sweep RUN [--home DIR]` works through the run's queued sweep trials. This is what
`imm run --detach`, `imm resume` and the app start; users call `imm` (imm_tui.cli)."""
import argparse
import sys

from .errors import RunStateError, UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=("run", "sweep"))
    parser.add_argument("run_id", metavar="RUN")
    parser.add_argument("--home", help="home folder of the database and runs (default $IMM_HOME, else ./imm-runs)")
    args = parser.parse_args(argv)
    from .runstate.paths import home_dir
    from .runstate.store import Store

    try:
        store = Store(home_dir(args.home))
        if args.job == "run":
            from .driver import run_engine

            status = run_engine(store, args.run_id)
        else:
            from .sweep import work_queue

            status = work_queue(store, args.run_id)
    except (UserError, RunStateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"engine: {args.job} {args.run_id}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
