"""The system history of one run (S on the run screen): what the engine sampled during each
stage, live while it runs (panes/system_history.py). The machine now is the System screen."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header

from ..panes.system_history import SystemHistoryPane
from ..widgets.footer import ImmFooter


class RunSystemScreen(Screen):
    DEFAULT_CSS = "RunSystemScreen > SystemHistoryPane { padding: 0 1; }"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield SystemHistoryPane(self.run_id)
        yield ImmFooter()

    def on_mount(self) -> None:
        self.sub_title = f"{self.run_id} · system history"
        self.query_one("#history-table").focus()
