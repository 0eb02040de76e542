"""Line charts of the run's curves (plotext through textual-plotext): an SFT metric against the
optimizer step, a braille line per iteration; and numbers per iteration (yield, pass@1), as a
table of the values with each line's marker and, where there is room, a chart without a legend
(a legend inside the plot covered the points, and a few rows rounded the values)."""
from __future__ import annotations

from rich.text import Text
from textual_plotext import PlotextPlot

PAST = "gray"  # earlier iterations, drawn first and dimmed
CURRENT = "orange"  # the current iteration, drawn last: on top
RICH_COLOUR = {PAST: "bright_black", CURRENT: "dark_orange"}  # the same two for a legend outside the plot
MARKERS = ("●", "x", "+", "o", "*", "#")  # per-iteration lines: apart in monochrome too
POINTS_PER_CELL = 2  # braille holds 2 x 4 dots a cell: more points than this add nothing


def thin(points: list[tuple[int, float]], width: int) -> list[tuple[int, float]]:
    """At most POINTS_PER_CELL points per column of the chart: every n-th, and always the last."""
    keep = max(1, width * POINTS_PER_CELL)
    if len(points) <= keep:
        return points
    stride = -(-len(points) // keep)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


class CurveChart(PlotextPlot):
    """One metric of SFT against the optimizer step: a line per iteration, the current one on top
    in the accent colour (the pane's note line is the legend)."""

    def draw(self, series: dict[int, list[tuple[int, float]]], current: int | None, title: str) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        order = sorted(series, key=lambda t: (t == current, t))
        for t in order:
            points = thin(series[t], self.size.width)
            if not points:
                continue
            now = t == current
            plt.plot([p[0] for p in points], [p[1] for p in points], marker="braille", color=CURRENT if now else PAST)
        plt.xlabel("optimizer step")
        self.refresh()


LABEL_W, VALUE_W = 22, 7  # the table's first column (marker and name), each iteration's column


def iteration_table(lines: dict[str, list[tuple[int, float]]], width: int) -> Text:
    """The per-iteration numbers as rows (marker, name, a value per iteration, "-" where none);
    the latest iterations that fit the width, "…" heading the table when earlier ones are left out."""
    xs = sorted({x for points in lines.values() for x, _ in points})
    fit = max(1, (width - LABEL_W) // VALUE_W)
    shown = xs[-fit:]
    head = ("… " if len(shown) < len(xs) else "") + "iteration"
    text = Text(f"{head:<{LABEL_W}}" + "".join(f"{x:>{VALUE_W}}" for x in shown), style="bold")
    for n, (label, points) in enumerate(lines.items()):
        values = dict(points)
        row = f"{MARKERS[n % len(MARKERS)]} {label}"[:LABEL_W - 1]
        text.append(f"\n{row:<{LABEL_W}}" + "".join(
            f"{values[x]:>{VALUE_W}.1f}" if x in values else f"{'-':>{VALUE_W}}" for x in shown))
    return text


class IterationChart(PlotextPlot):
    """Numbers per iteration on one axis (%): the filter's yield, pass@1 of SFT_t and Merge_t;
    each line's marker as in iteration_table, which is its legend."""

    def draw(self, lines: dict[str, list[tuple[int, float]]], title: str) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        xs = sorted({x for points in lines.values() for x, _ in points})
        for n, (label, points) in enumerate(lines.items()):
            if points:
                plt.plot([p[0] for p in points], [p[1] for p in points], marker=MARKERS[n % len(MARKERS)])
        if xs:
            plt.xticks(xs, [str(x) for x in xs])
            plt.xlim(xs[0] - 0.25, xs[-1] + 0.25)  # the first and last points clear of the frame
        plt.xlabel("iteration")
        self.refresh()
