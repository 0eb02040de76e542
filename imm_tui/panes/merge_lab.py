"""The merge_lab tab of a run (being built)."""
from __future__ import annotations

from textual.containers import Vertical
from textual.widgets import Static


class MergeLabPane(Vertical):
    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id

    def compose(self):
        yield Static("merge_lab", markup=False)
