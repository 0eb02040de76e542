"""One module per subcommand (see `engine.cli`), and the helpers they share."""
from __future__ import annotations

HOME_HELP = "home folder of the database and runs (default $IMM_HOME, else ./imm-runs)"


def add_run_arguments(parser) -> None:
    """RUN (an id or a unique prefix) and --home, for commands that act on one run."""
    parser.add_argument("run_id", metavar="RUN", help="run id (or a unique prefix)")
    parser.add_argument("--home", help=HOME_HELP)


def open_run(args):
    """(store, run row) for args.run_id in args.home; a RunStateError when there is no such run."""
    from engine.errors import RunStateError
    from engine.runstate.paths import home_dir
    from engine.runstate.store import Store

    store = Store(home_dir(args.home))
    row = store.run(args.run_id)
    if row is None:
        raise RunStateError(f"no run {args.run_id!r} in {store.home}")
    return store, row
