"""Where presets come from: the bundled ones (package data inside `engine`, found through
importlib.resources, so a wheel or pipx install carries them) and the user's folder; a preset
given on the command line by its path or by its name."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def bundled_dir() -> Path:
    """The presets shipped in the installed package (the checkout's presets/ links to them)."""
    from importlib import resources

    return Path(str(resources.files("engine") / "presets"))


def user_dir() -> Path:
    """$IMM_PRESETS_DIR, else $XDG_CONFIG_HOME/imm/presets (~/.config/imm/presets)."""
    if os.environ.get("IMM_PRESETS_DIR"):
        return Path(os.environ["IMM_PRESETS_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME") or "~/.config").expanduser() / "imm" / "presets"


def preset_files() -> list[tuple[str, Path]]:
    """(source, path) of every preset: the bundled ones, then the user's, each sorted by name."""
    return [(source, path) for source, folder in (("bundled", bundled_dir()), ("user", user_dir()))
            for path in (sorted(folder.glob("*.toml")) if folder.is_dir() else [])]


def find_preset(preset: str | Path) -> Path:
    """A preset file: `preset` itself when it is one, else the preset of that name (the user's
    folder first, so a saved preset can stand in for a bundled one of the same name)."""
    if Path(preset).expanduser().is_file():
        return Path(preset).expanduser()
    by_name = {path.stem: path for _, path in preset_files()}  # the user's come last and win
    if str(preset) in by_name:
        return by_name[str(preset)]
    raise ConfigError("preset", str(preset), "a preset file, or the name of one: " + ", ".join(sorted(by_name)))
