"""A preset file (TOML, UTF-8) -> a settings dict: `extends = "other.toml"` starts from another
preset, `--set key.path=value` overrides edit the dict, [tasks.NAME] tables gather into tasks.specs."""
from __future__ import annotations

import tomllib
from pathlib import Path

from ..errors import ConfigError
from .types import parse_scalar


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `key.path=value` to the nested dict `data` in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", assignment, "KEY.PATH=VALUE, e.g. merge.alpha=0.3")
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(key, raw, "a path through tables of the config")
    node[parts[-1]] = parse_scalar(raw.strip())


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_toml(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("preset", str(path), f"a readable file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("preset", str(path), f"UTF-8 text (byte {raw[exc.start]:#04x} on line {line} is not)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("preset", str(path), f"valid TOML ({exc})") from None


def load_preset(path: str | Path, _seen: tuple = ()) -> dict:
    """A preset's settings; `extends = "other.toml"` (relative to the preset) starts from another
    preset and overrides what this one sets. The name defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("extends" if _seen else "preset", str(path), "an existing TOML file (see presets/)")
    data = _read_toml(path)
    name = data.get("name", path.stem)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent or "\x00" in parent:
            raise ConfigError("extends", parent, "the path of another preset, relative to this one")
        parent_path = path.parent / parent
        if parent_path.resolve() in _seen + (path.resolve(),):
            raise ConfigError("extends", parent, "a preset that does not extend this one again (a cycle)")
        data = deep_merge(load_preset(parent_path, _seen + (path.resolve(),)), data)
    data["name"] = name
    return data


def gather_task_specs(data: dict) -> None:
    """Move the [tasks.NAME] sub-tables of a preset into tasks.specs."""
    tasks = data.get("tasks")
    if isinstance(tasks, dict):
        specs = {k: v for k, v in tasks.items() if isinstance(v, dict) and k != "specs"}
        earlier = tasks.get("specs", {})
        if specs and isinstance(earlier, dict):  # else the schema refuses tasks.specs
            data["tasks"] = {k: v for k, v in tasks.items() if k not in specs}
            data["tasks"]["specs"] = {**earlier, **specs}
