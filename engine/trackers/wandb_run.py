"""report_to "wandb": one W&B run per imm run (id and name from the run id, resumed when the
engine resumes), in project $WANDB_PROJECT (default "imm"); W&B's own settings apply
(WANDB_MODE=offline keeps it on disk under RUN_DIR/wandb/, `wandb sync` uploads it later).
Every scalar key gets its own x axis (define_metric): the SFT steps of each iteration, the
iteration, the checkpoint."""
from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_PROJECT = "imm"
INIT_TIMEOUT_S = 60  # an unreachable server: a warning after this long, not W&B's default wait


def wandb_id(run_id: str) -> str:
    """A W&B run id (letters, digits, '-', '_'; at most 64 characters) for an imm run id."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[-64:]


class WandbBackend:
    def __init__(self, run_id: str, run_dir: Path):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT), id=wandb_id(run_id), name=run_id,
                              resume="allow", dir=str(run_dir), settings=wandb.Settings(init_timeout=INIT_TIMEOUT_S,
                                                                                         silent=True, console="off"))
        self._axes: set[str] = set()

    def config(self, config: dict) -> None:
        self.run.config.update(config, allow_val_change=True)

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        for key in values:
            if key not in self._axes:
                self.run.define_metric(key, step_metric=axis)
                self._axes.add(key)
        self.run.log({**values, axis: step})

    def table(self, key: str, columns, rows) -> None:
        self.run.log({key: self.wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def close(self) -> None:
        self.run.finish()


def open_backend(run_id: str, run_dir: Path, home: Path) -> WandbBackend:
    return WandbBackend(run_id, run_dir)
