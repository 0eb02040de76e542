"""Snapshots of the shell's screens (runs, new run, system) at 80x24 and 160x48 on the fixed home
of app_fixtures: TZ=UTC, the API's clock frozen, no user presets, no NVML, fixed CPU numbers.
Regenerate with `pytest tests/test_app_snapshots_shell.py --snapshot-update` and review the SVGs."""
from __future__ import annotations

import time

import pytest

from app_helpers import tables_sized, until
from app_fixtures import freeze_clock, make_snapshot_home
from imm_tui.app import ImmApp
from imm_tui.screens import system

# A snapshot on a busy CPU can still catch a frame drawn before Textual re-measured a table's
# columns (it does that when the app is next idle); a real change of the screen fails every try.
pytestmark = pytest.mark.flaky(reruns=2)

SIZES = [(80, 24), (160, 48)]
HOME_NAME = "home"  # the header shows the home folder's name


@pytest.fixture
def app(tmp_path, monkeypatch) -> ImmApp:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("IMM_PRESETS_DIR", str(tmp_path / "no-user-presets"))
    freeze_clock(monkeypatch)
    monkeypatch.setattr(system.Sampler, "sample",
                        lambda self: system.MachineSample((12.5, 87.5), 6 * system.GIB, 16 * system.GIB, ()))
    monkeypatch.setattr(system, "POLL_SECONDS", 3600)  # one sample: the history is fixed
    yield ImmApp(make_snapshot_home(tmp_path / HOME_NAME))
    time.tzset()


async def settle(pilot) -> None:
    """Let the workers finish and the screen redraw."""
    for _ in range(3):
        await pilot.pause(0.3)
        await pilot.app.workers.wait_for_complete()
    await until(pilot, lambda: tables_sized(pilot.app), what="the tables' column widths")
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen(snap_compare, app, size):
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_new_run_screen(snap_compare, app, size):
    async def open_form(pilot):
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await pilot.pause(0.5)  # the debounced check and its dry run
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=open_form)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_system_screen(snap_compare, app, size):
    async def open_system(pilot):
        await settle(pilot)
        await pilot.press("S")
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=open_system)
