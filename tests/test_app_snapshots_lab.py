"""Snapshots of the run detail's Layers and Merge lab tabs, the Compare screen and the Export
dialog at 80x24 and 160x48, on the fixed fixture home (clock frozen). Regenerate with
--snapshot-update after a deliberate change of the screen, and look at the report before committing."""
from __future__ import annotations

import pytest
from textual.widgets import DataTable

from app_fixtures import RUN_DONE, RUN_FAILED, freeze_clock, make_snapshot_home
from imm_tui.app import ImmApp
from imm_tui.panes.layers import LayersPane
from imm_tui.panes.merge_lab import MergeLabPane
from test_app_lab import wait_for

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])


async def runs_screen(pilot) -> None:
    await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "RunsScreen", what="the runs screen")


def tab_loader(key: str, pane_type):
    async def run_before(pilot) -> None:
        await runs_screen(pilot)
        pilot.app.open_run(RUN_DONE)
        await wait_for(pilot, lambda: pilot.app.screen.query_one(pane_type), what="the run detail")
        await pilot.press(key)
        await wait_for(pilot, lambda: pilot.app.screen.query_one(pane_type).data is not None, what="the pane's data")
        await pilot.pause(0.3)

    return run_before


@SIZES
@pytest.mark.parametrize("tab", ["layers", "merge-lab"])
def test_lab_tab(snap_compare, tmp_path, monkeypatch, tab, size):
    freeze_clock(monkeypatch)
    home = make_snapshot_home(tmp_path / "home")
    key, pane = {"layers": ("2", LayersPane), "merge-lab": ("4", MergeLabPane)}[tab]
    assert snap_compare(ImmApp(home), terminal_size=size, run_before=tab_loader(key, pane))


@SIZES
def test_compare(snap_compare, tmp_path, monkeypatch, size):
    freeze_clock(monkeypatch)
    home = make_snapshot_home(tmp_path / "home")

    async def run_before(pilot) -> None:
        await runs_screen(pilot)
        pilot.app.compare_runs([RUN_DONE, RUN_FAILED])
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#compare-config", DataTable).row_count > 0,
                       what="the comparison")
        await pilot.pause(0.3)

    assert snap_compare(ImmApp(home), terminal_size=size, run_before=run_before)


@SIZES
def test_export_dialog(snap_compare, tmp_path, monkeypatch, size):
    freeze_clock(monkeypatch)
    home = make_snapshot_home(tmp_path / "home")

    async def run_before(pilot) -> None:
        await runs_screen(pilot)
        pilot.app.export_run(RUN_DONE)
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#export-path"), what="the export dialog")
        await pilot.pause(0.3)

    assert snap_compare(ImmApp(home), terminal_size=size, run_before=run_before)
