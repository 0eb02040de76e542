"""Presets (TOML) + `--set key.path=value` overrides -> one validated `RunConfig`.

Every rejection is a `ConfigError` naming the field path, the value and what is allowed (one per
wrong field, all at once), raised before anything is written. The package's modules: `schema`
(types, bounds and defaults), `types` (the value types and their wording), `presets` (files,
`extends`, `--set`), `sources` (where presets live), `checks` (across fields, files, task data),
`resolver` (preset + overrides to a RunConfig), `resume` (what a resume may change), `derived` (what stages compute from a config),
`writing` (TOML, dotted keys) and `messages` (pydantic's errors in the project's words).

Names load on first use (PEP 562): the app reads presets and compares configs through
`sources` and `writing` without paying for pydantic and the schema at start-up."""
from __future__ import annotations

import importlib

_HOMES = {  # what the rest of the project imports from the package
    "derived": ["derived_grad_accum", "samples_per_temperature", "sft_backend"],
    "presets": ["apply_override", "load_preset"],
    "resolver": ["resolve"],
    "resume": ["RESUMABLE_KEYS", "resume_config"],
    "schema": ["EvalConfig", "RunConfig", "SFTConfig"],
    "types": ["SEED_MAX", "check_alpha", "check_drop_rate", "check_name"],
    "writing": ["flatten", "to_toml"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted([*_MODULE_OF, "INT_MAX"])


def __getattr__(name: str):
    if name == "INT_MAX":  # field path -> its upper bound, read from the schema
        from .messages import int_bounds
        from .schema import RunConfig

        value = int_bounds(RunConfig)
    elif name in _MODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
