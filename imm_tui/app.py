"""The imm app (being built): runs, a run's detail, new runs, merge lab, system."""
from __future__ import annotations

from pathlib import Path

from textual.app import App

from engine import api


class ImmApp(App):
    TITLE = "imm"

    def __init__(self, home: str | Path | None = None):
        super().__init__()
        self.home = api.home_dir(home)

    def open_run(self, run_id: str) -> None:
        from .screens.run_detail import RunDetailScreen

        self.push_screen(RunDetailScreen(run_id))


def run_app(home: str | None = None) -> int:
    ImmApp(home).run()
    return 0
