"""Every key every screen offers, pressed as a user would: for each screen and tab, the keys its
active bindings declare (the screen's, the focused widget's and the app's, read from Textual,
not a list kept here) are pressed one after the other, each followed by leaving whatever it
opened; then the screen is left. The app must still run, with no exception and no failed worker.
Also with a busy-loop process on every core (a shared machine): marked slow_under_load, it runs
where IMM_UNDER_LOAD=1 (benchmarks/under_load.py sets it)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual import events
from textual.keys import key_to_character
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from app_fixtures import RUN_DONE, RUN_STOPPED, freeze_clock, make_snapshot_home
from app_helpers import until
from engine.runstate.store import Store
from imm_tui.app import ImmApp
from imm_tui.screens.new_run import NewRunScreen, field_id
from imm_tui.screens.run_detail import TABS, RunDetailScreen, focus_target
from imm_tui.screens.runs import RunsScreen

pytestmark = pytest.mark.anyio
SIZE = (80, 24)
QUIT_ACTIONS = {"quit", "app.quit"}
# Keys that leave the place are pressed last (then nothing needs to be entered again).
LEAVING_ACTIONS = {"app.pop_screen", "back", "close", "cancel", "answer(False)"}


# The helper processes end with the test process even where it is killed (no finalizer runs then).
ORPHAN_EXITS = f"import os, time\nwatch = lambda: os.getppid() == {os.getpid()}\n"


@pytest.fixture(autouse=True)
def user_presets(tmp_path, monkeypatch):
    monkeypatch.setenv("IMM_PRESETS_DIR", str(tmp_path / "user-presets"))
    monkeypatch.chdir(tmp_path)  # Export's enter writes its default path, ./RUN-results.md


@pytest.fixture
def stand_in():
    """A live process standing in for a run's engine and for its sweep worker: the run shows as
    running, and trials queued in the merge lab wait in the queue (no worker is spawned for them)."""
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_EXITS + "while watch(): time.sleep(0.5)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def busy_cores(request):
    """With param True: one busy-loop process per core, for the test's length (always killed)."""
    procs = []
    if request.param:
        procs = [subprocess.Popen([sys.executable, "-c", ORPHAN_EXITS + "while watch():\n    for _ in range(10**6): pass"])
                 for _ in range(len(os.sched_getaffinity(0)))]
    yield request.param
    for p in procs:
        p.kill()
        p.wait()


def make_home(tmp_path: Path, monkeypatch, pid: int) -> Path:
    freeze_clock(monkeypatch)
    home = make_snapshot_home(tmp_path / "home")
    store = Store(home)
    # RUN_STOPPED becomes a running run (its engine: the stand-in); RUN_DONE's sweep worker too.
    store.update_run(RUN_STOPPED, status="running", pid=pid)
    store.update_run(RUN_DONE, sweep_pid=pid)
    store.db.conn.close()
    return home


def keys_of(app, already: set) -> dict[str, str]:
    """key -> action of every active binding the app, the current screen and imm's own widgets in
    focus declare (a Textual widget's own editing keys, e.g. the config's TextArea cursor moves,
    are Textual's to test), less the app's and the screen's that are in `already` (pressed on
    another tab of the same run: the same binding of the same screen)."""
    return {key: active.binding.action for key, active in app.screen.active_bindings.items()
            if (active.node in (app, app.screen) and (key, active.binding.action) not in already)
            or (active.node not in (app, app.screen) and type(active.node).__module__.startswith("imm_tui."))}


async def settle(pilot) -> None:
    """Until what the last key or step set off has played out: every message pump of the app and of
    the screen on top has handled what it was sent, no worker runs and no animation is pending, for
    two rounds in a row (a handled message may post another). This waits on those conditions, not on
    the process looking idle as `pilot.press`/`pilot.pause()` do (up to a second per key on a busy app)."""
    app, quiet = pilot.app, 0
    while quiet < 2:
        await pilot.pause(0)  # each pump has handled the messages it held when this was called
        for worker in list(app.workers):
            with contextlib.suppress(WorkerCancelled, WorkerFailed):  # a failure is the hook's to report
                await worker.wait()
        await app.animator.wait_until_complete()
        pumps = [app, *app.screen.walk_children(with_self=True)]
        quiet = 0 if any(pump.message_queue_size for pump in pumps) else quiet + 1


async def press(pilot, key: str) -> None:
    """The key as the terminal driver sends it (with its character, as `pilot.press` makes it), then
    settle."""
    pilot.app.post_message(events.Key(key, key_to_character(key)))
    await settle(pilot)


async def walk(pilot, name: str, enter, failures: list, pressed: dict, shared: set | None = None) -> None:
    """Enter a place, press each of its keys (back to the place after each), then leave it. The
    places that share `shared` (a run's tabs) press the app's and the screen's keys once among them."""
    app = pilot.app
    await enter()
    await settle(pilot)
    base, depth = app.screen, len(app.screen_stack)
    tab = getattr(base.query_one("#tabs"), "active", None) if isinstance(base, RunDetailScreen) else None
    focused = app.focused
    keys = keys_of(app, shared if shared is not None else set())
    if shared is not None:
        shared.update((k, a) for k, a in keys.items() if app.screen.active_bindings[k].node in (app, app.screen))
    assert keys or shared, name  # a run tab without keys of its own: its screen's were pressed on another
    order = sorted(keys, key=lambda k: keys[k] in LEAVING_ACTIONS or keys[k].endswith(".dismiss"))
    for key in order:
        action = keys[key]
        if action in QUIT_ACTIONS:
            continue  # it would quit: checked below that it is the quit action, not pressed
        await press(pilot, key)
        assert app.is_running and app._exception is None, f"{name}: {key} ({action})"
        assert not failures, f"{name}: a worker failed by {key} ({action}) or just before: {failures}"
        pressed.setdefault(name, []).append(key)
        # Back to the place: close what the key opened, or enter it again if the key left it.
        while len(app.screen_stack) > depth:
            await app.pop_screen()
        if app.screen is not base:
            await enter()
            base, depth = app.screen, len(app.screen_stack)
        if tab is not None and base.query_one("#tabs").active != tab:
            base.action_tab(tab)
            await settle(pilot)
        if focused is not None and focused.is_attached and app.focused is not focused:
            app.set_focus(focused)
    await settle(pilot)
    assert not failures, f"{name}: a worker failed: {failures}"
    assert all(keys[k] in QUIT_ACTIONS for k in ("q",) if k in keys)
    # leave it
    while len(app.screen_stack) > 2:
        await app.pop_screen()


@pytest.mark.parametrize("busy_cores", [False, pytest.param(True, marks=pytest.mark.slow_under_load)],
                         ids=["idle", "busy"], indirect=True)
async def test_every_key_of_every_screen_leaves_the_app_running(tmp_path, monkeypatch, stand_in, busy_cores):
    started, cpu = time.monotonic(), time.process_time()
    failures: list = []
    pressed: dict[str, list[str]] = {}

    def hook(message) -> None:
        if isinstance(message, Worker.StateChanged) and message.state == WorkerState.ERROR:
            failures.append(f"{message.worker.name}: {message.worker.error!r}")

    # Runs, empty: a home with no database yet.
    async with ImmApp(tmp_path / "empty").run_test(size=SIZE, message_hook=hook) as pilot:
        async def empty_runs():
            await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), 60, "runs")
        await walk(pilot, "runs (empty)", empty_runs, failures, pressed)

    home = make_home(tmp_path, monkeypatch, stand_in)
    async with ImmApp(home).run_test(size=SIZE, message_hook=hook) as pilot:
        app = pilot.app

        async def runs():
            while len(app.screen_stack) > 2:
                app.pop_screen()
            screen = await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.runs and app.screen,
                                 10, "runs")
            table = screen.query_one("#runs")
            table.move_cursor(row=[r.id for r in screen.runs].index(RUN_DONE))  # resume: nothing left to run

        def open_screen(push):
            async def enter():
                await runs()
                push()
                await settle(pilot)
            return enter

        async def new_run():
            await runs()
            app.new_run()
            screen = await until(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.config
                                 and app.screen, 60, "new run")
            # A value the engine refuses: ctrl+r is pressed too, and must not start an engine.
            screen.query_one("#" + field_id("seed")).value = "not a seed"
            await until(pilot, lambda: screen.errors, 60, "the refusal")

        def run_tab(run_id: str, tab: str):
            async def enter():
                await runs()
                app.open_run(run_id)
                screen = await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.detail
                                     and app.screen, 60, "the run")
                screen.action_tab(tab)
                pane = screen.query_one(f"TabPane#{tab}")
                # the pane's own widget focused (its keys are the ones to press), where it shows one
                await until(pilot, lambda: focus_target(pane) is None
                            or (app.focused is not None and pane in app.focused.ancestors), 60, f"{tab} focused")
            return enter

        per_run = {RUN_DONE: set(), RUN_STOPPED: set()}
        places = [("runs (full)", runs, None), ("new run", new_run, None)]
        places += [(f"{run_id} {tab}", run_tab(run_id, tab), per_run[run_id]) for run_id in per_run for tab in TABS]
        places += [
            ("compare", open_screen(lambda: app.compare_runs([RUN_DONE, RUN_STOPPED])), None),
            ("export", open_screen(lambda: app.export_run(RUN_DONE)), None),
            ("system", open_screen(app.show_system), None),
            ("keys help", open_screen(app.action_help), None),
            ("palette", open_screen(app.action_command_palette), None),
        ]
        for name, enter, shared in places:
            await walk(pilot, name, enter, failures, pressed, shared)
        assert app.is_running and app._exception is None and not failures
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    assert set(pressed) >= {"runs (empty)", "new run", f"{RUN_DONE} merge-lab", "palette"}
    print(f"key walk ({'busy' if busy_cores else 'idle'}): {sum(map(len, pressed.values()))} keys "
          f"in {len(pressed)} places, {elapsed:.1f} s ({cpu:.1f} s CPU)")
