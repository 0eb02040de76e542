"""A run's system history, as the engine sampled it during each stage (engine.api.system_history):
CPU, memory and each GPU's utilisation over the run's stage time (a braille line each, the
stages' starts as vertical lines; the time between engine processes is left out), and a table
per stage with the averages, the peaks of memory and the share of samples each GPU sat idle, so a
user sees where the box was idle. Live while
the run runs."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from engine import api

from ..widgets.live_poll import LivePoll
from ..widgets.plain import plain
from ..widgets.stage_timeline import duration
from ..widgets.table_fill import fill

GIB = 1024**3
IDLE_PCT = 5.0  # a GPU below this utilisation counts as idle in a sample
INTERVAL_S = 2.0  # the engine's sampling interval (engine.runstate.system_history), for the first sample


@dataclass(frozen=True)
class StageSpan:
    """The samples of one stage (in the order the stages ran) and where they sit on the time axis:
    a sample covers the interval before it, so a span starts one interval before its first."""

    iteration: int
    stage: str
    points: tuple[api.SystemPoint, ...]
    start: float  # epoch seconds: the first sample's interval begins
    offset: float  # seconds of stage time before this span

    @property
    def seconds(self) -> float:
        return self.points[-1].ts - self.start

    def x(self, p: api.SystemPoint) -> float:
        """Minutes of stage time at sample p."""
        return (self.offset + p.ts - self.start) / 60


def spans(points: list[api.SystemPoint]) -> list[StageSpan]:
    """Consecutive samples of one stage make a span; spans sit end to end, so the hours between a
    stop and a resume take no room."""
    groups: list[list[api.SystemPoint]] = []
    for p in points:
        if groups and (groups[-1][0].iteration, groups[-1][0].stage) == (p.iteration, p.stage):
            groups[-1].append(p)
        else:
            groups.append([p])
    out, offset = [], 0.0
    for g in groups:
        interval = min(g[1].ts - g[0].ts, INTERVAL_S) if len(g) > 1 else INTERVAL_S
        span = StageSpan(g[0].iteration, g[0].stage, tuple(g), g[0].ts - interval, offset)
        offset += span.seconds
        out.append(span)
    return out


def gpu_indices(points: list[api.SystemPoint]) -> list[int]:
    return sorted({g.index for p in points for g in p.gpus})


def stage_row(span: StageSpan, gpus: list[int], seconds: float | None) -> list[Text]:
    """A span's numbers; `seconds`: the stage's own time (its row), else the span's."""
    pts = span.points
    cpu = [p.cpu_pct for p in pts]
    cells = [f"{span.iteration} {span.stage}", duration(span.seconds if seconds is None else seconds), f"{sum(cpu) / len(cpu):.0f}", f"{max(cpu):.0f}",
             f"{max(p.mem_used for p in pts) / GIB:.1f}"]
    for i in gpus:
        readings = [g for p in pts for g in p.gpus if g.index == i]
        if readings:
            util = [g.util for g in readings]
            idle = 100 * sum(u < IDLE_PCT for u in util) / len(util)
            cells += [f"{sum(util) / len(util):.0f}", f"{idle:.0f}", f"{max(g.mem_used for g in readings) / GIB:.1f}"]
        else:
            cells += ["–", "–", "–"]
    return [Text(c, justify="left" if n == 0 else "right") for n, c in enumerate(cells)]


class SystemHistoryPane(LivePoll, Vertical):
    DEFAULT_CSS = """
    SystemHistoryPane { height: 1fr; }
    SystemHistoryPane > #history-note { height: auto; color: $text-muted; }
    SystemHistoryPane > PlotextPlot { height: 1fr; min-height: 8; }
    SystemHistoryPane > DataTable { height: auto; max-height: 45%; }
    """
    poll_s = 2.0

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.points: list[api.SystemPoint] | None = None

    def compose(self) -> ComposeResult:
        yield Static("loading the system history…", id="history-note", markup=False)
        yield PlotextPlot(id="history-plot")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="history-table")

    def on_mount(self) -> None:
        self.start_polling()

    def read(self) -> tuple[list[api.SystemPoint], dict[tuple[int, str], float | None]]:
        points = api.system_history(self.run_id, home=self.app.home)
        stages = api.run_detail(self.run_id, home=self.app.home).stages
        return points, {(s.iteration, s.stage): s.seconds for s in stages}

    def show(self, read) -> None:
        note = self.query_one("#history-note", Static)
        if isinstance(read, Exception):
            note.update(plain(f"system history: {read}"))
            return
        data, seconds = read
        if data == self.points:
            return
        self.points = data
        gpus = gpu_indices(data)
        if not data:
            note.update("no samples: the engine samples the machine while a stage runs (runs made before imm stored "
                        "system history have none)")
        else:
            note.update(plain(f"{len(data):,} samples · CPU and memory" + (f", {len(gpus)} GPU(s) (NVML)" if gpus else
                                                                               ", no GPU seen (NVML)")
                              + f" · a GPU under {IDLE_PCT:g}% counts as idle"))
        all_spans = spans(data)
        self.plot(all_spans, gpus)
        columns = ["stage", "time", "CPU avg %", "CPU max %", "mem GiB"]
        for i in gpus:
            columns += [f"GPU{i} %", f"GPU{i} idle %", f"GPU{i} GiB"]
        last = {(s.iteration, s.stage): n for n, s in enumerate(all_spans)}  # a resumed stage: its time once
        fill(self.query_one(DataTable), [Text(c) for c in columns],
             [stage_row(s, gpus, seconds.get((s.iteration, s.stage)) if last[s.iteration, s.stage] == n else None)
              for n, s in enumerate(all_spans)])

    def plot(self, all_spans: list[StageSpan], gpus: list[int]) -> None:
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        series: dict[str, list[tuple[float, float]]] = {}
        for span in all_spans:
            for p in span.points:
                x = span.x(p)
                series.setdefault("CPU %", []).append((x, p.cpu_pct))
                series.setdefault("mem %", []).append((x, p.mem_pct))
                for g in p.gpus:  # their memory is in the table: four lines at most stay readable at 80x24
                    series.setdefault(f"GPU{g.index} %", []).append((x, g.util))
        for span in all_spans[1:]:
            plt.vline(span.offset / 60, "gray")
        for label, points in series.items():
            plt.plot([x for x, _ in points], [y for _, y in points], marker="braille", label=label)
        plt.ylim(0, 100)
        plt.title("system load by stage time (vertical lines: a stage starts)")
        plt.xlabel("minutes")
        plot.refresh()
