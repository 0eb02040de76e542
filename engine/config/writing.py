"""A config dict out again: as a preset's TOML (tomli-w) and as dotted keys (compare, trackers)."""
from __future__ import annotations

import tomli_w


def to_toml(data: dict) -> str:
    """A config dict (RunConfig.to_dict()) as a preset: scalars first, then one [table] per
    section; tasks.specs become [tasks.NAME] tables. `resolve` of the text gives the same config."""
    data = dict(data)
    if isinstance(data.get("tasks"), dict):
        tasks = dict(data["tasks"])
        specs = tasks.pop("specs", None) or {}
        data["tasks"] = {**tasks, **specs}
    return tomli_w.dumps(_without_none(data))


def _without_none(data: dict) -> dict:
    """TOML has no null: a None value is left out (the default applies)."""
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """A nested config dict as dotted keys (sft.lr: 1e-05) to leaf values; an empty table or list
    is a leaf of None (a config that omits a table and one that leaves it empty say the same)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = None if value in ({}, []) else value
    return out
