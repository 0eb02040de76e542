"""Where a task's records come from: a local JSONL file or folder, or a data set on the hub.

Resolution for one split, first match wins:
1. an explicit `path` (a preset's `[tasks.NAME] path`): a folder holding `{split}.jsonl`, or one
   `.jsonl` file, which is the task's test split;
2. `{root}/{folder}/{split}.jsonl` under the data roots (the folder may differ per split: MATH's
   train split is `math/`, its test split `math500/`): `$IMM_DATA_DIR` when set, else
   `../shared/data` relative to the current directory and to the project root;
3. the hub data set for that split, through `datasets.load_dataset(name, config, split=...)`.
Records are plain dicts with the fields as stored, the same from a file or from the hub.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..jsonl import read_records

ENV_VAR = "IMM_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Whether a missing local file may be fetched from the hub: a context variable, not the
# environment (HF_HUB_OFFLINE), which every engine the app starts later would inherit.
_HUB_READS: ContextVar[bool] = ContextVar("hub_reads", default=True)


@contextmanager
def no_hub_reads() -> Iterator[None]:
    """Inside: hub data is not fetched (the dry run counts questions without downloading)."""
    token = _HUB_READS.set(False)
    try:
        yield
    finally:
        _HUB_READS.reset(token)


def data_roots() -> list[Path]:
    env = os.environ.get(ENV_VAR)
    if env:
        return [Path(env).expanduser()]
    roots = []
    for base in (Path.cwd(), PROJECT_ROOT):
        root = (base / ".." / "shared" / "data").resolve()
        if root not in roots:
            roots.append(root)
    return roots


@dataclass(frozen=True)
class HubSplit:
    name: str  # e.g. "openai/gsm8k"
    config: str | None = None  # e.g. "main"
    split: str = "test"  # the hub's split name


@dataclass(frozen=True)
class Source:
    path: str | None = None
    folder: str | None = None  # sub-folder under the data roots
    split_folders: dict[str, str] = field(default_factory=dict)  # a split's own sub-folder, where it differs
    hub: dict[str, HubSplit] = field(default_factory=dict)  # our split name -> hub split


def load_records(task: str, source: Source, split: str) -> tuple[list[dict], str]:
    """The split's records and a description of where they came from (for error messages)."""
    if source.path:
        path = Path(source.path).expanduser()
        if path.is_dir():
            return read_jsonl(task, path / f"{split}.jsonl", split), str(path / f"{split}.jsonl")
        if split != "test":
            raise UserError(
                f"task {task!r}: path {str(path)!r} is one file, which holds only the test split; "
                f"for split {split!r} point path at a folder holding {split}.jsonl"
            )
        return read_jsonl(task, path, split), str(path)
    folder = source.split_folders.get(split, source.folder)
    searched = [root / folder / f"{split}.jsonl" for root in data_roots()] if folder else []
    for candidate in searched:
        if candidate.is_file():
            return read_jsonl(task, candidate, split), str(candidate)
    where = ", ".join(map(str, searched)) or "no local folder"
    if split not in source.hub:
        raise UserError(
            f"task {task!r}: no data for split {split!r}: looked for {where}; set {ENV_VAR} or the "
            f"task's path to a folder holding {split}.jsonl"
        )
    hub = source.hub[split]
    return load_hub(task, hub, where), f"hub {hub.name}" + (f" ({hub.config})" if hub.config else "")


def read_jsonl(task: str, path: Path, split: str) -> list[dict]:
    if not path.is_file():
        raise UserError(f"task {task!r}: split {split!r}: no such file {str(path)!r}")
    records = read_records(path, f"task {task!r}")
    if not records:
        raise UserError(f"task {task!r}: split {split!r}: {path} holds no records")
    return records


def load_hub(task: str, hub: HubSplit, searched: str) -> list[dict]:
    if not _HUB_READS.get():
        raise UserError(f"task {task!r}: no local file (looked for {searched}); hub data is not read here")
    try:
        import datasets
    except ImportError:
        raise UserError(f"task {task!r}: no local file (looked for {searched}) and the `datasets` package is not "
                        f"installed to load {hub.name!r} from the hub; set {ENV_VAR} or the task's path") from None
    try:
        data = datasets.load_dataset(hub.name, hub.config, split=hub.split)
    except Exception as exc:  # offline, unknown name, missing split: all end the same for the user
        raise UserError(
            f"task {task!r}: could not load {hub.name!r} (config {hub.config!r}, split {hub.split!r}) "
            f"from the hub: {type(exc).__name__}: {str(exc)[:200]}; no local file either "
            f"(looked for {searched}); set {ENV_VAR} or the task's path"
        ) from None
    records = [dict(r) for r in data]
    if not records:
        raise UserError(f"task {task!r}: hub {hub.name!r} split {hub.split!r} holds no records")
    return records
