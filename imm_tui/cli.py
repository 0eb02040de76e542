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
    parser = argparse.ArgumentParser(prog="imm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").add_parser(sub)
    return parser


def app_arguments(argv: list[str]) -> argparse.Namespace | None:
    """`imm`, `imm app` and `imm --home DIR` (no subcommand) open the app."""
    rest = argv[1:] if argv[:1] == ["app"] else argv
    if rest and rest[0] not in ("--home",) and not rest[0].startswith("--home="):
        return None
    parser = argparse.ArgumentParser(prog="imm app", description="open the app")
    parser.add_argument("--home", help=commands.HOME_HELP)
    return parser.parse_args(rest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    app_args = app_arguments(argv)
    args = build_parser().parse_args(argv) if app_args is None else None
    try:
        if app_args is not None:
            from .app import run_app

            return run_app(app_args.home)
        return int(args.func(args) or 0)
    except (UserError, RunStateError) as exc:
        from engine.api import clean  # the message may quote a file, a model or a log: plain text

        print(f"error: {clean(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`imm ... | head`): not an error of the command.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
