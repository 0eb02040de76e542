"""Progress inside a stage, as data the app can draw: step / total in a unit, what is being worked
on (a label: the checkpoint an eval answers with), the rate, tokens/s and the last loss where
there is one. The rate counts only the work of this attempt: steps a resumed stage restored from a
checkpoint or a partial file move the bar but are not new work. Rows are coalesced: at most one write every `interval`
seconds per stage (plus the first and the last), however often a stage reports."""
from __future__ import annotations

import time
from typing import Callable


class ProgressReporter:
    """One stage's progress. `write(fields)` stores the row (the engine passes Store.set_progress
    bound to its run, iteration and stage); tests pass a list's append."""

    def __init__(self, write: Callable[..., None], interval: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self._write, self.interval, self._clock = write, interval, clock
        self.step = self.total = 0
        self.unit = ""
        self.loss: float | None = None
        self.tokens = 0
        self.label: str | None = None
        self._restored = 0  # steps of `step` restored, not done, in this attempt
        self._t0 = self._last = None

    def start(self, total: int, unit: str, label: str | None = None, restored: int = 0) -> None:
        """A new phase of the stage: `total` units (samples, steps, questions, tensors, examples),
        `restored` of them already done by an earlier attempt; `label` names what the phase works on."""
        self.step, self.total, self.unit, self.tokens, self.loss = int(restored), int(total), unit, 0, None
        self.label, self._restored = label, int(restored)
        self._t0 = self._clock()
        self._flush(started=True)

    def restore(self, n: int) -> None:
        """n more units found done by an earlier attempt (a partial file's chunks): the bar moves,
        the rate does not count them."""
        self._restored += n
        self.update(self.step + n)

    def advance(self, n: int = 1, loss: float | None = None, tokens: int = 0) -> None:
        self.update(self.step + n, loss=loss, tokens=tokens)

    def update(self, step: int, loss: float | None = None, tokens: int = 0) -> None:
        """Now at `step` of total; `tokens` more were processed since the last call."""
        if self._t0 is None:
            raise RuntimeError("ProgressReporter.update before start")
        self.step = min(int(step), self.total) if self.total else int(step)
        self.tokens += tokens
        if loss is not None:
            self.loss = float(loss)
        if self.step >= self.total or self._clock() - self._last >= self.interval:
            self._flush()

    def flush(self) -> None:
        """Write the row now (a safe point: the stage's work so far is saved)."""
        if self._t0 is not None:
            self._flush()

    def _flush(self, started: bool = False) -> None:
        now = self._last = self._clock()
        elapsed = max(now - self._t0, 1e-9)
        fields = {"step": self.step, "total": self.total, "unit": self.unit,
                  "rate": None if started else (self.step - self._restored) / elapsed, "label": self.label,
                  "tokens_per_s": None if started or not self.tokens else self.tokens / elapsed, "loss": self.loss}
        if started:
            fields["started"] = time.time()
        self._write(**fields)


def null_progress() -> ProgressReporter:
    """A reporter that stores nothing (tools and tests outside a run)."""
    return ProgressReporter(lambda **_: None)
