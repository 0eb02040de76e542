"""The results tab of a run: the ID / OOD table (rows Base, SFT1, Merge1, ...; in-domain task
first) with the best value per column marked (bold and a '*') and the change against Base, and
a line plot of each task across checkpoints. k cycles the metric (pass@k). Live while visible.

The plot draws its lines in braille dots (4 rows a cell: an 8-row plot no longer rounds 45.3 and
54.0 onto one row), marks each point with its task's symbol and its value, keeps its key in a
line of its own (plotext's legend sat on the Base points) and never gets shorter than
PLOT_ROWS: the tab scrolls instead."""
from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from engine import api

from ..widgets.live_poll import LivePoll
from ..widgets.plain import clean, plain
from ..widgets.table_fill import fill

MARKERS = ("●", "x", "+", "o", "*", "#")  # one per task: lines stay apart in monochrome
COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red")  # one per task, named in the key line
PLOT_ROWS = 14


def metric_key(metric: str) -> tuple[int, str]:
    m = re.fullmatch(r"pass@(\d+)", metric)
    return (int(m.group(1)), metric) if m else (1 << 30, metric)


class ResultsTable:
    """The numbers of one metric, arranged: checkpoints (in order) x tasks (in-domain first)."""

    def __init__(self, rows: list[api.ResultRow], metric: str):
        rows = [r for r in rows if r.metric == metric and r.checkpoint != "trial"]
        self.checkpoints = sorted({r.checkpoint for r in rows}, key=api.checkpoint_order)
        self.tasks = sorted({(r.domain, r.task) for r in rows}, key=lambda d_t: (d_t[0] != api.Domain.ID, d_t[1]))
        self.value = {(r.checkpoint, r.task): r.value for r in rows}
        self.adopted = {r.checkpoint: r.adopted for r in rows if r.adopted is not None}
        self.best = {t: max((self.value[c, t] for c in self.checkpoints if (c, t) in self.value), default=None)
                     for _, t in self.tasks}

    def label(self, checkpoint: str) -> str:
        """Merge2† for an adopted sweep trial (the note line says which)."""
        return api.checkpoint_label(checkpoint) + ("†" if checkpoint in self.adopted else "")

    def cell(self, checkpoint: str, task: str) -> Text:
        """56.3 (+11.0)* — bold and starred when best in its column."""
        v = self.value.get((checkpoint, task))
        if v is None:
            return Text("–", style="dim")
        base = self.value.get(("base", task))
        text = f"{v:.1f}" + (f" ({v - base:+.1f})" if base is not None and checkpoint != "base" else "")
        best = v == self.best[task]
        return Text(text + ("*" if best else " "), style="bold" if best else "", justify="right")


class ResultsPane(LivePoll, Vertical):
    DEFAULT_CSS = """
    ResultsPane { height: 1fr; overflow-y: auto; }
    ResultsPane > #results-note { height: auto; color: $text-muted; }
    ResultsPane > DataTable { height: auto; }
    ResultsPane > #results-key { height: auto; }
    ResultsPane > PlotextPlot { height: 1fr; min-height: %d; }
    """ % PLOT_ROWS
    BINDINGS = [Binding("k", "next_metric", "Next pass@k")]
    poll_s = 2.0

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.rows: list[api.ResultRow] | None = None
        self.metric = "pass@1"

    def compose(self) -> ComposeResult:
        yield Static("loading results…", id="results-note", markup=False)
        yield DataTable(cursor_type="none", zebra_stripes=True, id="results-table")
        yield PlotextPlot(id="results-plot")
        yield Static("", id="results-key")

    def on_mount(self) -> None:
        self.start_polling()

    def read(self) -> list[api.ResultRow]:
        return api.results(self.run_id, home=self.app.home)

    def show(self, rows: list[api.ResultRow] | Exception) -> None:
        if isinstance(rows, Exception):
            self.query_one("#results-note", Static).update(f"results: {clean(rows)}")
        elif rows != self.rows:
            self.rows = rows
            metrics = self.metrics
            if metrics and self.metric not in metrics:
                self.metric = metrics[0]
            self.draw()

    @property
    def metrics(self) -> list[str]:
        return sorted({r.metric for r in self.rows or [] if r.checkpoint != "trial"}, key=metric_key)

    def action_next_metric(self) -> None:
        metrics = self.metrics
        if len(metrics) > 1:
            self.metric = metrics[(metrics.index(self.metric) + 1) % len(metrics)]
            self.draw()

    def draw(self) -> None:
        table = ResultsTable(self.rows or [], self.metric)
        metrics = self.metrics
        note = (f"{self.metric} (%) · * best per column · (±) against Base"
                + (f" · k: metric ({', '.join(metrics)})" if len(metrics) > 1 else "")
                + "".join(f" · {table.label(c)} {a.text}" for c, a in table.adopted.items()))
        self.query_one("#results-note", Static).update(note if table.checkpoints else "no results yet")
        fill(self.query_one(DataTable),
             [Text("checkpoint"), *[plain(f"{task} {domain.upper()}") for domain, task in table.tasks]],
             [[plain(table.label(c)), *[table.cell(c, t) for _, t in table.tasks]] for c in table.checkpoints])
        self.plot(table)

    def plot(self, table: ResultsTable) -> None:
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        xs = list(range(1, len(table.checkpoints) + 1))
        key = Text()
        for n, (domain, task) in enumerate(table.tasks):
            points = [(x, table.value[c, task]) for x, c in zip(xs, table.checkpoints) if (c, task) in table.value]
            marker, color = MARKERS[n % len(MARKERS)], COLORS[n % len(COLORS)]
            if points:
                plt.plot([p[0] for p in points], [p[1] for p in points], marker="braille", color=color)
                plt.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, color=color)
                for x, y in points:
                    plt.text(f" {y:.1f}", x, y, color=color)
            key.append(f"{marker} ", style=f"bold {color}").append(clean(f"{task} {domain.upper()}") + "   ")
        if xs:
            plt.xticks(xs, [table.label(c) for c in table.checkpoints])
            plt.xlim(0.7, len(xs) + 0.6)  # room for the last point's value
        plt.title(f"{self.metric} (%) by checkpoint")
        self.query_one("#results-key", Static).update(key)
        plot.refresh()
