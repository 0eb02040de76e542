"""The `imm` command (also `python -m imm_tui`).

With no subcommand it opens the app; each module in
`imm_tui.commands` is one subcommand, defining `add_parser(subparsers)` which registers its parser
with `set_defaults(func=run)`. Commands go through `engine.api`; heavy packages (torch) load only
inside the API calls that need them, so `imm --help` and `imm ls` stay instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from engine.errors import RunStateError, UserError

from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imm", description="imm: a terminal lab for iterative self-improvement of language-model "
                                 "reasoners with model merging.",
        epilog="`imm` with no command, or `imm app`, opens the app on the home folder.")
    # Before the command it also serves the command (`imm --home DIR ls` as `imm ls --home DIR`).
    parser.add_argument("--home", dest="app_home", metavar="HOME", help=commands.HOME_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    app = sub.add_parser("app", help="open the app (what `imm` alone does)",
                         description="Open the terminal app over the home folder's runs.")
    app.add_argument("--home", help=commands.HOME_HELP)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    args.home = getattr(args, "home", None) or args.app_home
    try:
        if args.command in (None, "app"):
            from .app import run_app

            return run_app(args.home)
        return int(args.func(args) or 0)
    except (UserError, RunStateError) as exc:
        from engine.api import clean  # the message may quote a file, a model or a log: plain text

        for error in getattr(exc, "errors", [exc]):  # a ConfigError names every wrong field, a line each
            print(f"error: {clean(error)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`imm ... | head`): not an error of the command.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
