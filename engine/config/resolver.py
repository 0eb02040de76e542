"""Preset + overrides -> one validated RunConfig, or a ConfigError holding every wrong field."""
from __future__ import annotations

import copy
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from ..domain import ModelSource
from ..errors import ConfigError
from .checks import config_errors, local_path
from .messages import field_errors
from .presets import apply_override, gather_task_specs, load_preset
from .schema import RunConfig
from .sources import find_preset

_SCHEMA = TypeAdapter(RunConfig)


def resolve(preset: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Preset (a file, a preset's name or a dict) + overrides -> validated RunConfig. A local model
    path is made absolute, so a detached engine started elsewhere finds the same folder. Every
    error is reported at once: the overrides' and the schema's, else those of the checks after it."""
    data = load_preset(find_preset(preset)) if not isinstance(preset, dict) else copy.deepcopy(preset)
    errors = []
    for assignment in overrides:
        try:
            apply_override(data, assignment)
        except ConfigError as exc:
            errors.append(exc)
    gather_task_specs(data)
    try:
        cfg = _SCHEMA.validate_python(data)
    except ValidationError as exc:
        raise ConfigError.every(errors + field_errors(exc, RunConfig) + _checks_without(data, exc)) from None
    errors += config_errors(cfg)
    if errors:
        raise ConfigError.every(errors)
    for holder in (cfg.model, cfg.teacher):
        local = local_path(holder.path) if holder.path and ModelSource.of(holder.path) is not ModelSource.BUILTIN else None
        if local:
            holder.path = str(local.resolve())
    for spec in cfg.tasks.specs.values():
        if spec.get("path"):
            spec["path"] = str(Path(spec["path"]).expanduser().resolve())
    return cfg


def _checks_without(data: dict, exc: ValidationError) -> list[ConfigError]:
    """The checks after the schema, run with the wrong fields at their defaults (so an unknown
    task is named together with a wrong alpha); none of their errors about those fields."""
    cut = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"][: next((i for i, p in enumerate(err["loc"]) if isinstance(p, int)), None)])
        node: object = data
        for part in loc[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and loc:
            node.pop(loc[-1], None)
            cut.append(".".join(map(str, loc)))
    try:
        cfg = _SCHEMA.validate_python(data)
    except ValidationError:
        return []
    return [e for e in config_errors(cfg) if not any(e.path == c or e.path.startswith((c + ".", c + "[")) for c in cut)]
