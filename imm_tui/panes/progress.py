"""The progress tab of a run: the stage timeline, the running stage's progress (rate, ETA, loss,
tokens/s) and the followed engine log. The detail screen feeds it each poll's detail."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from engine import api

from ..widgets.log_view import LogView
from ..widgets.fmt import duration
from ..widgets.stage_timeline import StageTimeline


def progress_line(p: api.Progress, status: str) -> str:
    """iter 1 sft · 40/120 steps · 2.0 steps/s · ETA 1m00s · loss 0.734 · 5,400 tok/s; an eval names
    its checkpoint: iter 1 eval SFT1 (1 of 2) · 300/900 questions · ..."""
    parts = [f"iter {p.iteration} {p.stage}" + (f" {p.label}" if p.label else ""), f"{p.step:,}/{p.total:,} {p.unit}"]
    if p.rate:
        parts.append(f"{p.rate:,.1f} {p.unit}/s")
    if status == "running" and p.eta is not None:
        parts.append(f"ETA {duration(p.eta)}")
    if p.loss is not None:
        parts.append(f"loss {p.loss:.3f}")
    if p.tokens_per_s:
        parts.append(f"{p.tokens_per_s:,.0f} tok/s")
    if status != "running":
        parts.append(f"({status})")
    return " · ".join(parts)


class ProgressPane(Vertical):
    DEFAULT_CSS = """
    ProgressPane { height: 1fr; }
    ProgressPane > #progress-row { height: auto; display: none; margin-bottom: 1; }
    ProgressPane > #progress-row.-shown { display: block; }
    ProgressPane > StageTimeline { margin-bottom: 1; }
    """

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield StageTimeline("loading stages…", id="timeline")
        with Vertical(id="progress-row"):
            yield Static("", id="stage-progress", markup=False)
            yield ProgressBar(show_eta=False, id="stage-bar")
        yield LogView(id="log-view")

    def show(self, detail: api.RunDetail, progress: api.Progress | None) -> None:
        """Draw one poll's detail (stages) and progress of the running stage (None: none)."""
        self.query_one(StageTimeline).show(detail.stages, live=detail.summary.status == "running")
        row = self.query_one("#progress-row")
        row.set_class(progress is not None, "-shown")
        if progress is not None:
            self.query_one(ProgressBar).update(total=max(progress.total, 1), progress=progress.step)
            self.query_one("#stage-progress", Static).update(progress_line(progress, detail.summary.status))
        log = self.query_one(LogView)
        if log.path != detail.log_path:
            log.tail(detail.log_path)
