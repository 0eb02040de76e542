"""A run's identity and stage plan, and creating one (rows + folder) from a validated config."""
from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING

from ..domain import Method, ModelSource
from ..durable import write_atomic
from .names import RunStatus, Stage
from .paths import RunPaths, private_files, run_paths
from .store import Store

if TYPE_CHECKING:  # the run state needs no schema: it reads a validated config
    from ..config import RunConfig


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def iteration_stages(cfg: RunConfig) -> list[Stage]:
    stages = [Stage.GENERATE, Stage.FILTER, Stage.SFT]
    if cfg.method == Method.IMM:
        stages.append(Stage.MERGE)
    stages.append(Stage.EVAL)
    return stages


def analyzed(cfg: RunConfig, t: int) -> bool:
    return cfg.analyze.when == "every" or (cfg.analyze.when == "first_last" and t in (1, cfg.iterations))


def plan(cfg: RunConfig) -> list[tuple[int, Stage]]:
    """Every stage of the run in order, as (iteration, stage); iteration 0 prepares the base."""
    steps = [(0, Stage.BUILD)] if ModelSource.of(cfg.model.path).built_at_start else []
    steps.append((0, Stage.EVAL))
    for t in range(1, cfg.iterations + 1):
        steps += [(t, stage) for stage in iteration_stages(cfg)] + ([(t, Stage.ANALYZE)] if analyzed(cfg, t) else [])
    return steps


def create_run(store: Store, cfg: RunConfig, preset: str) -> tuple[str, RunPaths]:
    """Rows for the run and its plan, then its folder (with the resolved config)."""
    run_id = new_run_id(cfg.name)
    run_dir = f"runs/{run_id}"
    paths = run_paths(store.home, run_dir)
    store.create_run(
        {"id": run_id, "name": cfg.name, "preset": preset, "method": cfg.method, "status": RunStatus.CREATED,
         "config": json.dumps(cfg.to_dict()), "run_dir": run_dir},
        plan(cfg),
    )
    with private_files():
        paths.root.mkdir(parents=True)
        write_config_copy(paths, cfg.to_dict())
    return run_id, paths


def write_config_copy(paths: RunPaths, config: dict) -> None:
    """The run folder's config.json: a copy of the database's config for people and scripts
    (nothing reads it back), written whole or not at all."""
    write_atomic(paths.config, json.dumps(config, indent=2))


def config_copy_ok(paths: RunPaths) -> bool:
    try:
        return isinstance(json.loads(paths.config.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):  # missing, unreadable, half-written, not UTF-8
        return False
