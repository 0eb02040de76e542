"""Where things live: the home folder (database + run folders) and one run's folder layout."""
from __future__ import annotations

import os
from pathlib import Path

DB_NAME = "imm.db"


def home_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--home DIR, else $IMM_HOME, else ./imm-runs."""
    return Path(explicit or os.environ.get("IMM_HOME") or "imm-runs").expanduser().resolve()


def db_path(home: Path) -> Path:
    return Path(home) / DB_NAME


def run_paths(home: Path, run_dir: str) -> "RunPaths":
    """A run's paths from its row: run_dir is stored relative to the home (runs/RUN_ID), so a
    copied or moved home still finds its runs; older rows hold absolute paths, which stay as they are."""
    return RunPaths(Path(home) / run_dir)


class RunPaths:
    """Where a run keeps its artifacts: run_dir/{config.json, engine.log, iter_T/{samples.jsonl,
    graded.jsonl, kept.jsonl, sft/, merged/, eval_*.jsonl, importance.json, diagnostics.json},
    sweeps/}; while a stage runs also its resume state (sft_checkpoint.pt, *.jsonl.partial)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.root = Path(run_dir)
        self.config = self.root / "config.json"
        self.log = self.root / "engine.log"
        self.out = self.root / "engine.out"
        self.lock = self.root / "engine.lock"
        self.stop_request = self.root / "STOP"
        self.sweep_log = self.root / "sweep.log"

    def iteration(self, t: int) -> Path:
        return self.root / f"iter_{t}"

    def samples(self, t: int) -> Path:
        return self.iteration(t) / "samples.jsonl"

    def graded(self, t: int) -> Path:
        return self.iteration(t) / "graded.jsonl"

    def kept(self, t: int) -> Path:
        return self.iteration(t) / "kept.jsonl"

    def sft(self, t: int) -> Path:
        return self.iteration(t) / "sft"

    def sft_checkpoint(self, t: int) -> Path:
        """SFT's training checkpoint (engine/train/checkpointing.py), deleted when the stage ends."""
        return self.iteration(t) / "sft_checkpoint.pt"

    def merged(self, t: int) -> Path:
        return self.iteration(t) / "merged"

    def importance(self, t: int) -> Path:
        return self.iteration(t) / "importance.json"

    def diagnostics(self, t: int) -> Path:
        return self.iteration(t) / "diagnostics.json"

    def eval_samples(self, t: int, checkpoint: str) -> Path:
        return self.iteration(t) / f"eval_{checkpoint}.jsonl"

    def sweeps(self, t: int) -> Path:
        return self.root / "sweeps" / f"iter_{t}"
