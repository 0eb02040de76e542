"""Snapshots of the run screen's Curves tab and of the run's system history (S) at 80x24 and
160x48, on the fixed fixture home (clock frozen). Regenerate with --snapshot-update after a
deliberate change of the screen, and look at the report before committing."""
from __future__ import annotations

from app_fixtures import RUN_DONE, STEPS
from app_helpers import tables_sized, until
from imm_tui.panes.curves import CurvesPane
from imm_tui.screens.run_system import RunSystemScreen
from test_app_detail import open_detail
from test_app_snapshots_lab import SIZES, app  # noqa: F401 - the fixture: the fixed home, clock frozen


@SIZES
def test_curves_tab(snap_compare, app, size):
    async def run_before(pilot) -> None:
        screen = await open_detail(pilot, RUN_DONE)
        await pilot.press("7")
        pane = screen.query_one(CurvesPane)
        await until(pilot, lambda: len(pane.points) == 2 * STEPS and pane._shown is not None, what="the curves")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_system_history(snap_compare, app, size):
    async def run_before(pilot) -> None:
        await open_detail(pilot, RUN_DONE)
        await pilot.press("S")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunSystemScreen)
                    and pilot.app.screen.query_one("#history-table").row_count == 14, what="the system history")
        await until(pilot, lambda: tables_sized(pilot.app), what="the tables' column widths")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
