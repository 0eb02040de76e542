"""A run's identity and folder layout, and creating one (rows + folder) from a validated config."""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from .config import BUILTIN_PREFIX, RunConfig
from .store import Store


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def iteration_stages(cfg: RunConfig) -> list[str]:
    stages = ["generate", "filter", "sft"]
    if cfg.method == "imm":
        stages.append("merge")
    stages.append("eval")
    return stages


def analyzed(cfg: RunConfig, t: int) -> bool:
    return cfg.analyze.when == "every" or (cfg.analyze.when == "first_last" and t in (1, cfg.iterations))


def plan(cfg: RunConfig) -> list[tuple[int, str]]:
    """Every stage of the run in order, as (iteration, stage); iteration 0 prepares the base."""
    steps = [(0, "build")] if cfg.model.path.startswith(BUILTIN_PREFIX) else []
    steps.append((0, "eval"))
    for t in range(1, cfg.iterations + 1):
        steps += [(t, stage) for stage in iteration_stages(cfg)] + ([(t, "analyze")] if analyzed(cfg, t) else [])
    return steps


class RunPaths:
    """Where a run keeps its artifacts: run_dir/iter_T/{samples.jsonl, kept.jsonl, sft/, merged/,
    eval_*.jsonl, importance.json, diagnostics.json}."""

    def __init__(self, run_dir: Path):
        self.root = Path(run_dir)
        self.log = self.root / "engine.log"
        self.out = self.root / "engine.out"
        self.lock = self.root / "engine.lock"
        self.stop_request = self.root / "STOP"

    def iteration(self, t: int) -> Path:
        return self.root / f"iter_{t}"

    def samples(self, t: int) -> Path:
        return self.iteration(t) / "samples.jsonl"

    def kept(self, t: int) -> Path:
        return self.iteration(t) / "kept.jsonl"

    def sft(self, t: int) -> Path:
        return self.iteration(t) / "sft"

    def merged(self, t: int) -> Path:
        return self.iteration(t) / "merged"

    def importance(self, t: int) -> Path:
        return self.iteration(t) / "importance.json"

    def diagnostics(self, t: int) -> Path:
        return self.iteration(t) / "diagnostics.json"

    def eval_samples(self, t: int, checkpoint: str) -> Path:
        return self.iteration(t) / f"eval_{checkpoint}.jsonl"


def create_run(store: Store, cfg: RunConfig, preset: str) -> tuple[str, RunPaths]:
    """Rows for the run and its plan, then its folder (with the resolved config)."""
    run_id = new_run_id(cfg.name)
    paths = RunPaths(store.home / "runs" / run_id)
    store.create_run(
        {"id": run_id, "name": cfg.name, "preset": preset, "method": cfg.method, "status": "created",
         "config": json.dumps(cfg.to_dict()), "run_dir": str(paths.root)},
        plan(cfg),
    )
    paths.root.mkdir(parents=True)
    (paths.root / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    return run_id, paths
