"""imm presets: the presets `imm run NAME` accepts, bundled and yours, with where each file is."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("presets", help="list the presets (bundled and yours)", description=__doc__)
    p.set_defaults(func=run)


def run(args) -> int:
    from engine import api

    found = api.presets()
    width = max((len(p.name) for p in found), default=0)
    for p in found:
        print(f"{p.name:<{width}}  {p.source:<7}  {p.path}")
    print(f"your presets folder: {api.user_presets_dir()}")
    return 0
