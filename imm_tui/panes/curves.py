"""The curves tab of a run: every SFT optimizer step's loss, learning rate, gradient norm or
tokens/s (m cycles), a braille line per iteration against the step with the current iteration
highlighted, read live while a stage trains (only the steps stored since the last read); below,
per iteration, the generation yield and the pass@1 (in-domain, and the mean out-of-domain) of the
checkpoint the next iteration starts from: Merge_t under IMM, SFT_t otherwise (Base at 0), as a
table of the values and, when the tab is tall enough to draw it readably, a chart.

A tab rather than a section of Progress: at 80x24 Progress already holds the timeline, the bar and
the log, and a chart needs the height to be read."""
from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from engine import api

from ..widgets.curve_chart import CURRENT, PAST, RICH_COLOUR, CurveChart, IterationChart, iteration_table
from ..widgets.live_poll import LivePoll
from ..widgets.plain import plain

CHART_MIN_ROWS = 12  # the per-iteration chart only where it gets this many rows (80x24 gives the loss chart all)
# (StepPoint field, what the chart calls it)
METRICS = (("loss", "loss"), ("lr", "learning rate"), ("grad_norm", "gradient norm"), ("tokens_per_s", "tokens/s"))


@dataclass(frozen=True)
class CurvesRead:
    steps: list[api.StepPoint]  # stored since the last read
    stages: tuple[api.StageRow, ...]
    results: list[api.ResultRow]
    method: str


def current_iteration(stages: tuple[api.StageRow, ...], iterations: list[int]) -> int | None:
    """The iteration of the running stage; else the last one with steps."""
    running = [s.iteration for s in stages if s.status == "running"]
    return running[0] if running else (iterations[-1] if iterations else None)


def per_iteration(stages: tuple[api.StageRow, ...], results: list[api.ResultRow], method: str) -> dict[str, list]:
    """yield % of each filter stage; ID and mean OOD pass@1 of Base (0) and of each iteration's
    checkpoint that the next one starts from."""
    start_of_next = api.Checkpoint.merge if method == api.Method.IMM else api.Checkpoint.sft
    yields = [(s.iteration, s.info["yield_pct"]) for s in stages
              if s.stage == api.Stage.FILTER and s.status == api.StageStatus.DONE and "yield_pct" in s.info]
    by_domain: dict[str, dict[int, list[float]]] = {api.Domain.ID: {}, api.Domain.OOD: {}}
    base = str(api.Checkpoint(api.CheckpointKind.BASE))
    for r in results:
        if r.metric == "pass@1" and r.checkpoint in (base, str(start_of_next(r.iteration))):
            by_domain[r.domain].setdefault(0 if r.checkpoint == base else r.iteration, []).append(r.value)
    label = "Merge" if method == api.Method.IMM else "SFT"
    lines = {"yield %": yields}
    for domain, values in by_domain.items():
        lines[f"{domain.upper()} pass@1 {label}"] = sorted((t, sum(v) / len(v)) for t, v in values.items())
    return lines


class CurvesPane(LivePoll, Vertical, can_focus=True):  # type: ignore[call-arg]  # textual is Any to mypy
    DEFAULT_CSS = """
    CurvesPane { height: 1fr; }
    CurvesPane > #curves-note { height: 1; color: $text-muted; }
    CurvesPane > CurveChart { height: 3fr; min-height: 8; }
    CurvesPane > #iterations-table { height: auto; margin: 1 0 0 0; }
    CurvesPane > IterationChart { height: 2fr; min-height: 12; }
    """
    BINDINGS = [Binding("m", "next_metric", "Metric")]
    poll_s = 1.0

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.points: dict[tuple[int, int], api.StepPoint] = {}
        self.seq = 0  # the last StepPoint.seq read
        self.metric = 0  # index into METRICS
        self._shown: tuple | None = None  # (stages, results, method) last drawn

    def compose(self) -> ComposeResult:
        yield Static("loading curves…", id="curves-note", markup=False)
        yield CurveChart(id="curves-chart")
        yield Static("", id="iterations-table", markup=False)
        yield IterationChart(id="iterations-chart")

    def on_mount(self) -> None:
        self.start_polling()

    def on_resize(self) -> None:
        # 8 rows of loss chart, the note, the table (a margin, a heading, 3 rows), then the chart's own.
        self.query_one(IterationChart).display = self.size.height >= 8 + 1 + 5 + CHART_MIN_ROWS
        self.draw()

    def read(self) -> CurvesRead:
        steps = api.sft_steps(self.run_id, home=self.app.home, after=self.seq)
        detail = api.run_detail(self.run_id, home=self.app.home)
        return CurvesRead(steps, detail.stages, api.results(self.run_id, home=self.app.home), detail.summary.method)

    def show(self, data) -> None:
        if isinstance(data, Exception):
            self.query_one("#curves-note", Static).update(plain(f"curves: {data}"))
            return
        for p in data.steps:
            self.points[p.iteration, p.step] = p
            self.seq = max(self.seq, p.seq)
        context = (data.stages, data.results, data.method)
        if data.steps or context != self._shown:
            self._shown = context
            self.draw()

    def action_next_metric(self) -> None:
        self.metric = (self.metric + 1) % len(METRICS)
        self.draw()

    def draw(self) -> None:
        if self._shown is None:
            return
        stages, results, method = self._shown
        field, name = METRICS[self.metric]
        series: dict[int, list[tuple[int, float]]] = {}
        for (t, step), p in sorted(self.points.items()):
            value = getattr(p, field)
            if value is not None:
                series.setdefault(t, []).append((step, value))
        current = current_iteration(stages, sorted({t for t, _ in self.points}))
        note = plain("no SFT steps recorded yet (the hf backend stores every optimizer step)")
        if self.points:
            # The legend, here rather than inside the plot, where it covered the first steps.
            last = max((s for t, s in self.points if t == current), default=None)
            note = plain(f"{name} · ")
            for t in sorted(series):
                now = t == current
                note.append("━ ", style=RICH_COLOUR[CURRENT if now else PAST])
                note.append(f"iter {t}" + (f" (current) at step {last}" if now and last else "") + "  ")
            note.append("· m: next metric")
        self.query_one("#curves-note", Static).update(note)
        self.query_one(CurveChart).draw(series, current, f"SFT {name} by optimizer step")
        lines = per_iteration(stages, results, method)
        self.query_one("#iterations-table", Static).update(iteration_table(lines, self.size.width))
        self.query_one(IterationChart).draw(lines, "per iteration (%)")
