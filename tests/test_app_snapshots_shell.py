"""Snapshots of the shell's screens (runs, new run, system) at 80x24 and 160x48 on the fixed home
of app_fixtures: TZ=UTC, the API's clock frozen, no user presets, no NVML, fixed CPU numbers.
Regenerate with `pytest tests/test_app_snapshots_shell.py --snapshot-update` and review the SVGs."""
from __future__ import annotations

import time

import pytest

from app_helpers import settled, until
from app_fixtures import freeze_clock, make_snapshot_home
from imm_tui.app import ImmApp
from imm_tui.screens import system

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
    monkeypatch.setattr(system.SystemScreen, "poll_s", 3600)  # one sample: the history is fixed
    yield ImmApp(make_snapshot_home(tmp_path / HOME_NAME))
    time.tzset()


async def settle(pilot, ready=lambda screen: True) -> None:
    """Wait until ready(screen) and nothing more is being read (app_helpers.settled)."""
    await until(pilot, lambda: ready(pilot.app.screen) and settled(pilot.app), what="the screen's data")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen(snap_compare, app, size):
    assert snap_compare(app, terminal_size=size,
                        run_before=lambda pilot: settle(pilot, lambda screen: getattr(screen, "runs", None)))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_new_run_screen(snap_compare, app, size):
    async def open_form(pilot):
        await settle(pilot, lambda screen: getattr(screen, "runs", None))
        await pilot.press("n")
        # the preset read, then the debounced check's dry-run plan shown
        await settle(pilot, lambda screen: "stages" in str(screen.query_one("#dry-run").render()))

    assert snap_compare(app, terminal_size=size, run_before=open_form)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_system_screen(snap_compare, app, size):
    async def open_system(pilot):
        await settle(pilot, lambda screen: getattr(screen, "runs", None))
        await pilot.press("S")
        await settle(pilot, lambda screen: isinstance(screen, system.SystemScreen))

    assert snap_compare(app, terminal_size=size, run_before=open_system)
