"""A run in detail, as tabs: Progress, Layers, Results, Merge lab, Samples, Config (being built)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from ..panes.config import ConfigPane
from ..panes.layers import LayersPane
from ..panes.merge_lab import MergeLabPane
from ..panes.progress import ProgressPane
from ..panes.results import ResultsPane
from ..panes.samples import SamplesPane


class RunDetailScreen(Screen):
    BINDINGS = [("escape", "app.pop_screen", "Back")]

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            with TabPane("Progress", id="progress"):
                yield ProgressPane(self.run_id)
            with TabPane("Layers", id="layers"):
                yield LayersPane(self.run_id)
            with TabPane("Results", id="results"):
                yield ResultsPane(self.run_id)
            with TabPane("Merge lab", id="merge-lab"):
                yield MergeLabPane(self.run_id)
            with TabPane("Samples", id="samples"):
                yield SamplesPane(self.run_id)
            with TabPane("Config", id="config"):
                yield ConfigPane(self.run_id)
        yield Footer()
