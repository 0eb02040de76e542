"""Filling a DataTable whose rows are all known at once, each column as wide as its widest cell from
the first frame. Textual sizes auto-width columns only when the table is next idle, and keeps the
lines it drew before that: on a busy machine they are drawn first, and the columns stayed as wide
as their labels ("ad  arit" for "add3-0  arith_add3") until something moved the cursor."""
from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable


def _width(cell: object) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


def fill(table: DataTable, labels: Sequence[str | Text], rows: Sequence[Sequence[object]],
         keys: Sequence[str] | None = None) -> None:
    """Replace the table's columns (their labels) and rows (with their keys, if given)."""
    table.clear(columns=True)
    for i, label in enumerate(labels):
        table.add_column(label, width=max([_width(label), *(_width(row[i]) for row in rows)]))
    for n, row in enumerate(rows):
        table.add_row(*row, key=None if keys is None else keys[n])
