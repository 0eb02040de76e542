"""A small alpha x p grid of one metric: a row per alpha, a column per p, the value printed in
each cell (so it reads without colour) on a background from low (red) to high (green)."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from .table_fill import fill

# Backgrounds from the 16 ANSI colours (they survive TERM=screen and 16-colour terminals).
HEAT = ("white on red", "black on yellow", "black on green", "black on bright_green")


def heat_style(value: float, low: float, high: float) -> str:
    if high <= low:
        return HEAT[-1]
    return HEAT[min(int((value - low) / (high - low) * len(HEAT)), len(HEAT) - 1)]


class AlphaGrid(DataTable):
    """cells: (alpha, p) -> a value (float) or a word for a trial without one (queued, running,
    failed). The best value is starred."""

    DEFAULT_CSS = "AlphaGrid { height: auto; width: auto; max-height: 12; }"

    def __init__(self, **kw):
        super().__init__(show_cursor=False, **kw)

    def show(self, cells: dict[tuple[float, float], float | str]) -> None:
        alphas = sorted({a for a, _ in cells})
        drops = sorted({p for _, p in cells})
        values = [v for v in cells.values() if isinstance(v, float)]
        low, high = (min(values), max(values)) if values else (0.0, 0.0)
        rows = []
        for a in alphas:
            row = [Text(f"{a:g}", style="bold")]
            for p in drops:
                v = cells.get((a, p))
                if isinstance(v, float):
                    mark = "*" if v == high else " "
                    row.append(Text(f"{v:5.1f}{mark}", style=heat_style(v, low, high), justify="right"))
                else:
                    row.append(Text(v or "", justify="right"))
            rows.append(row)
        columns = [Text("α \\ p", style="bold"), *(Text(f"{p:g}", style="bold", justify="right") for p in drops)]
        fill(self, columns if cells else [], rows)
