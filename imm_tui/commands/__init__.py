"""One module per subcommand (see `imm_tui.cli`), and the helpers they share."""
from __future__ import annotations

HOME_HELP = "home folder of the database and runs (default $IMM_HOME, else ./imm-runs)"


def add_run_arguments(parser) -> None:
    """RUN (an id or a unique prefix) and --home, for commands that act on one run."""
    parser.add_argument("run_id", metavar="RUN", help="run id (or a unique prefix)")
    parser.add_argument("--home", help=HOME_HELP)


def print_results(run_id: str, home) -> None:
    """The results table of a run, as `imm run` prints it when the run ends."""
    from engine import api

    print(api.export(run_id, "table", home=home))
