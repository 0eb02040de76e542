"""The SFT curves: every optimizer step of an SFT stage as a row of `sft_steps` (loss, learning
rate, gradient norm, tokens and tokens/s). The training loop makes one call a step (`record`).
Rows are written in batches (every BATCH_STEPS steps or BATCH_S seconds, whichever comes first):
the writer's commits fsync, and one a step would slow a fast loop. A loss or norm handed over as a
tensor is read when its batch is written, so recording adds no GPU sync to a step.

`flush` writes what is pending: the loop calls it before each training checkpoint, so a kill
after the checkpoint loses no step that the resumed stage will not run again; `begin(step)`
forgets rows after the step a stage starts (or resumes) from, so a resumed curve has each step
once.
"""
from __future__ import annotations

import time
from typing import Callable

BATCH_STEPS = 64
BATCH_S = 5.0


def _number(value) -> float | None:
    return None if value is None else float(value)


class StepRecorder:
    """One SFT stage's steps. `write(rows)` stores a batch, `trim(after)` drops stored steps after
    `after` (the engine passes Store methods bound to the run and iteration; tests pass lists).
    `on_rows(rows)` hears every written batch (the trackers)."""

    def __init__(self, write: Callable[[list[dict]], None], trim: Callable[[int], None] = lambda after: None,
                 on_rows: Callable[[list[dict]], None] = lambda rows: None, batch_steps: int = BATCH_STEPS,
                 batch_s: float = BATCH_S, clock: Callable[[], float] = time.monotonic):
        self._write, self._trim, self._on_rows, self._clock = write, trim, on_rows, clock
        self.batch_steps, self.batch_s = batch_steps, batch_s
        self._pending: list[dict] = []
        self._last = self._flushed = clock()

    def begin(self, step: int = 0) -> None:
        """Training starts at `step` (0, or the step of the checkpoint it resumed from)."""
        self._pending.clear()
        self._trim(step)
        self._last = self._flushed = self._clock()

    def record(self, step: int, loss, lr: float, grad_norm, tokens: int) -> None:
        """Optimizer step `step` ended: its loss and gradient norm (floats or 0-d tensors), the
        learning rate it used, and the tokens it saw (tokens/s: since the previous step ended)."""
        now = self._clock()
        seconds, self._last = now - self._last, now
        self._pending.append({"step": int(step), "loss": loss, "lr": float(lr), "grad_norm": grad_norm,
                              "tokens": int(tokens), "tokens_per_s": tokens / seconds if seconds > 0 else None,
                              "ts": time.time()})
        if len(self._pending) >= self.batch_steps or now - self._flushed >= self.batch_s:
            self.flush()

    def flush(self) -> None:
        self._flushed = self._clock()
        if not self._pending:
            return
        rows = [{**r, "loss": _number(r["loss"]), "grad_norm": _number(r["grad_norm"])} for r in self._pending]
        self._pending.clear()
        self._write(rows)
        self._on_rows(rows)


def null_steps() -> StepRecorder:
    """A recorder that stores nothing (tools, benchmarks and tests outside a run)."""
    return StepRecorder(lambda rows: None)
