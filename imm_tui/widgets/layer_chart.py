"""Per-layer bars: importance next to weight change (plotext through textual-plotext)."""
from __future__ import annotations

from textual_plotext import PlotextPlot

# The weight-change bars are shaded, so the pair reads without colour (NO_COLOR, monochrome).
CHANGE_MARKER = "░"
# Beyond this many layers only every n-th layer gets a tick label.
MAX_TICKS = 16


def key(percent: bool) -> str:
    return f"█ importance   {CHANGE_MARKER} weight change" + ("" if percent else " (right axis)")


class LayerChart(PlotextPlot):
    """Two bars per layer. Shares (%) share one axis; absolute values differ by orders of
    magnitude, so weight change then gets its own axis on the right. The bars carry no plotext
    legend (it sat on the bars and marked each entry with its axis side as L or ⅃): `key` says
    which is which, for a line beside the chart."""

    def draw(self, layers: list[int], importance: list[float | None], change: list[float | None],
             percent: bool, title: str) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title(title)
        if layers:
            xs = list(range(len(layers)))
            plt.bar([x - 0.2 for x in xs], [v or 0.0 for v in importance], width=0.4)
            plt.bar([x + 0.2 for x in xs], [v or 0.0 for v in change], width=0.4, marker=CHANGE_MARKER,
                    yside="left" if percent else "right")
            step = -(-len(xs) // MAX_TICKS)
            plt.xticks(xs[::step], [str(n) for n in layers[::step]])
            plt.xlabel("layer")
        self.refresh()
