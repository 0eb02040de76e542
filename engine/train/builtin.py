"""The embedded default's base model: the tiny char-level Llama of `engine.models.tiny`, given a
short pre-training on synthetic arithmetic with chain of thought (`engine.train.pretrain`).

Building it takes 75-140 s on 2 CPU cores, most of a new user's first run, so the package ships
the built checkpoint (3.4 MB, engine/train/shipped/NAME-vN, with the sha256 of every file and how
it was built in its manifest.json). `ensure_builtin` copies it into the home folder's model cache
(models/NAME-vN) after checking the sums, or builds the model when it is not shipped or
`build=True` (the tests build it for real and check the build reproduces the shipped copy).
Either happens once, under a file lock, so two runs starting together do not both do it.

    python -m engine.train.builtin NAME    # rebuild the shipped copy (1 torch thread)
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

BUILTINS: dict[str, dict[str, Any]] = {"tiny-arith": {"version": 1, "steps": 400, "batch_size": 64, "lr": 3e-3, "seed": 1234}}
SHIPPED = Path(__file__).resolve().parent / "shipped"
MANIFEST = "manifest.json"


def builtin_folder(home: Path, name: str) -> Path:
    return Path(home) / "models" / f"{name}-v{BUILTINS[name]['version']}"


def shipped_folder(name: str) -> Path:
    return SHIPPED / f"{name}-v{BUILTINS[name]['version']}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_builtin(home: Path, name: str, log: Callable[[str], None] = print, progress=None,
                   build: bool = False) -> Path:
    """The cached builtin base model's folder, installing the shipped copy (or, with `build` or
    none shipped, building it) first if it is not there yet."""
    from ..models.loading import made_once

    folder = builtin_folder(home, name)

    def make() -> None:
        if not build and (shipped_folder(name) / MANIFEST).exists():
            install_shipped(name, folder, log)
        else:
            from .pretrain import build_tiny

            spec = BUILTINS[name]
            log(f"building base model {name} (once; cached in {folder})")
            build_tiny(folder, spec["steps"], spec["batch_size"], spec["lr"], spec["seed"], log, progress)

    return made_once(folder, make)


def install_shipped(name: str, folder: Path, log: Callable[[str], None]) -> None:
    """Copy the shipped checkpoint to `folder` (through a temporary sibling) after checking every
    file's sha256 against its manifest."""
    from ..durable import write_then_publish

    source = shipped_folder(name)
    manifest = json.loads((source / MANIFEST).read_text())

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        for file, digest in manifest["sha256"].items():
            shutil.copyfile(source / file, tmp / file)
            if sha256(tmp / file) != digest:
                raise RuntimeError(f"shipped base model {name}: {source / file} does not match its sha256 in "
                                   f"{source / MANIFEST}; reinstall imm, or rebuild with python -m engine.train.builtin {name}")

    write_then_publish(folder, fill, sum((source / file).stat().st_size for file in manifest["sha256"]))
    log(f"base model {name}: installed the shipped copy in {folder} (sha256 checked)")


def rebuild_shipped(name: str) -> Path:
    """Build the model with 1 torch thread (so a rebuild on the same torch and CPU gives the same
    bytes) into the package's shipped folder, with its manifest."""
    import platform

    import torch

    from .pretrain import build_tiny

    torch.set_num_threads(1)
    spec, out = BUILTINS[name], shipped_folder(name)
    shutil.rmtree(out, ignore_errors=True)
    build_tiny(out, spec["steps"], spec["batch_size"], spec["lr"], spec["seed"])
    files = sorted(p.name for p in out.iterdir())
    manifest = {"name": name, **spec, "torch": torch.__version__, "torch_threads": 1, "cpu": cpu_model(),
                "machine": platform.machine(), "sha256": {f: sha256(out / f) for f in files}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")


if __name__ == "__main__":
    print(rebuild_shipped(sys.argv[1] if len(sys.argv) > 1 else "tiny-arith"))
