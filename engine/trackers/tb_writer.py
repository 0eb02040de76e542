"""report_to "tensorboard": event files in RUN_DIR/tensorboard/ (`tensorboard --logdir RUN_DIR`),
written with torch.utils.tensorboard's SummaryWriter (needs the tensorboard package: imm[tensorboard]).
Scalars by key and step; tables and the config as Markdown text."""
from __future__ import annotations

import json
from pathlib import Path

from ..results_table import render_markdown

FOLDER = "tensorboard"


class TensorBoardBackend:
    def __init__(self, logdir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir))

    def config(self, config: dict) -> None:
        # four spaces: Markdown code, so the JSON shows as written
        self.writer.add_text("config", "    " + json.dumps(config, indent=2).replace("\n", "\n    "))

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def table(self, key: str, columns, rows) -> None:
        self.writer.add_text(key, render_markdown(list(map(str, columns)), [["" if v is None else str(v) for v in r]
                                                                             for r in rows]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_backend(run_id: str, run_dir: Path, home: Path) -> TensorBoardBackend:
    return TensorBoardBackend(Path(run_dir) / FOLDER)
