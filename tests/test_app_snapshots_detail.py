"""Snapshots of the run detail's Progress, Results, Samples and Config tabs at 80x24 and 160x48,
on the fixed fixture home (clock frozen). Regenerate with --snapshot-update after a deliberate
change of the screen, and look at the report before committing."""
from __future__ import annotations

import pytest

from app_fixtures import RUN_DONE, freeze_clock, make_snapshot_home
from imm_tui.app import ImmApp
from imm_tui.panes.results import ResultsPane
from imm_tui.panes.samples import SamplesPane
from imm_tui.widgets.log_view import TailLog
from app_helpers import settled, until
from test_app_detail import open_detail

TABS = {"progress": "1", "results": "3", "samples": "5", "config": "6"}


def loaded(screen, tab: str):
    """The condition under which a tab shows its data (its worker has read it)."""
    if tab == "progress":
        return lambda: screen.query_one(TailLog).line_count > 0
    if tab == "results":
        return lambda: screen.query_one(ResultsPane).rows is not None
    if tab == "samples":  # the set is read, and the highlighted sample's text is drawn
        return lambda: (screen.query_one(SamplesPane).which is not None
                        and str(screen.query_one("#sample-detail").render()).strip() != "")
    return lambda: True


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("tab", list(TABS))
def test_detail_tab(snap_compare, tmp_path, monkeypatch, tab, size):
    freeze_clock(monkeypatch)
    home = make_snapshot_home(tmp_path / "home")

    async def run_before(pilot) -> None:
        screen = await open_detail(pilot, RUN_DONE)
        await pilot.press(TABS[tab])
        await until(pilot, lambda: loaded(screen, tab)() and settled(pilot.app), what=f"the {tab} tab's data")

    assert snap_compare(ImmApp(home), terminal_size=size, run_before=run_before)
