"""The `imm` command: every subcommand is the engine's (no torch is imported at start-up)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from engine.cli import main as engine_main

    return engine_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
