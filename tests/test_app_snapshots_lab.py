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
from app_helpers import settled, until
from test_app_lab import on_runs_screen, open_pane

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])


@pytest.fixture
def app(tmp_path, monkeypatch) -> ImmApp:
    freeze_clock(monkeypatch)
    return ImmApp(make_snapshot_home(tmp_path / "home"))


def shot(open_screen, ready):
    """A run_before: from the runs screen, open_screen(app), then wait until ready(screen)."""
    async def run_before(pilot) -> None:
        await on_runs_screen(pilot)
        await open_screen(pilot)
        await until(pilot, lambda: ready(pilot.app.screen) and settled(pilot.app), what="the screen's data")

    return run_before


@SIZES
@pytest.mark.parametrize("tab", [LayersPane, MergeLabPane], ids=["layers", "merge-lab"])
def test_lab_tab(snap_compare, app, tab, size):
    before = shot(lambda pilot: open_pane(pilot, RUN_DONE, tab), lambda screen: True)
    assert snap_compare(app, terminal_size=size, run_before=before)


async def _compare(pilot) -> None:
    pilot.app.compare_runs([RUN_DONE, RUN_FAILED])


async def _export(pilot) -> None:
    pilot.app.export_run(RUN_DONE)


@SIZES
def test_compare(snap_compare, app, size):
    before = shot(_compare, lambda screen: all(screen.query_one(f"#compare-{t}", DataTable).row_count > 0
                                               for t in ("results", "config")))
    assert snap_compare(app, terminal_size=size, run_before=before)


@SIZES
def test_export_dialog(snap_compare, app, size):
    assert snap_compare(app, terminal_size=size, run_before=shot(_export, lambda screen: screen.query_one("#export-path")))
