"""The embedded default's base model, built offline: the tiny char-level Llama of
`engine.models.tiny`, given a short pre-training on synthetic arithmetic with chain of thought
(`engine.train.pretrain`).

The result is cached in the home folder (models/NAME-vN), built once under a file lock so two
runs starting together do not both build it.
"""
from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Callable

BUILTINS = {"tiny-arith": {"version": 1, "steps": 400, "batch_size": 64, "lr": 3e-3, "seed": 1234}}


def builtin_folder(home: Path, name: str) -> Path:
    return Path(home) / "models" / f"{name}-v{BUILTINS[name]['version']}"


def ensure_builtin(home: Path, name: str, log: Callable[[str], None] = print, progress=None) -> Path:
    """The cached builtin base model's folder, building it first if it is not there yet."""
    folder = builtin_folder(home, name)
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "config.json").exists():
            from ..train.pretrain import build_tiny

            spec = BUILTINS[name]
            log(f"building base model {name} (once; cached in {folder})")
            build_tiny(folder, spec["steps"], spec["batch_size"], spec["lr"], spec["seed"], log, progress)
    return folder
