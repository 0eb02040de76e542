"""The installed `imm` in a real terminal (tmux, TERM=xterm-256color, 80x24): keys go in with
send-keys, the screen comes back with capture-pane. On the fixed home: the first screen lists the
finished run, Enter opens it, key 3 shows its Results table. Then the flows a new user met
(issue 16): New run -> ctrl+d -> launch; export onto an existing file; an adopted trial marked
in Config, Results and the export."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app_fixtures import RUN_DONE, RUN_INTERRUPTED, make_snapshot_home
from conftest import FAST, TINY_PRESET, wait_until

IMM = Path(sys.executable).parent / "imm"
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt-get)")


def tmux(session: str, *args: str) -> str:
    """tmux on the session's own server (socket named after it): one test's server shutting down
    can't meet another's new-session ("server exited unexpectedly" once in CI). Its stdin is
    /dev/null: a server started on the test runner's stdin dropped keys sent to the pane."""
    return subprocess.run(["tmux", "-L", session, *args], check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout


# Each session's Textual log (TEXTUAL_LOG): a timed-out wait shows the app's last events with the
# screen, so a key that never arrived can be told from one that arrived and drew nothing.
TEXTUAL_LOGS: dict[str, Path] = {}


def wait_for_screen(session: str, text: str, timeout: float = 120.0) -> str:
    def shown():
        screen = tmux(session, "capture-pane", "-p", "-t", session)
        return screen if text in screen else None
    try:
        return wait_until(shown, timeout, f"{text!r} on screen", every=0.2)
    except AssertionError as exc:
        log = TEXTUAL_LOGS[session].read_text(errors="replace").splitlines()[-60:]
        raise AssertionError(f"{exc}; the screen:\n{tmux(session, 'capture-pane', '-p', '-t', session)}\n"
                             "the app's last events:\n" + "\n".join(log)) from None


@contextlib.contextmanager
def imm_in_tmux(tmp_path: Path, home: Path, **extra_env: str):
    """A tmux session running the installed `imm --home HOME` at 80x24; after it quits, the pane
    shows `imm exited N`."""
    name = f"imm-test-{uuid.uuid4().hex[:8]}"
    TEXTUAL_LOGS[name] = tmp_path / f"{name}.textual.log"
    env = {"TERM": "xterm-256color", "TZ": "UTC", "IMM_PRESETS_DIR": str(tmp_path / "presets"),
           "TEXTUAL_LOG": str(TEXTUAL_LOGS[name]), **extra_env}
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    tmux(name, "new-session", "-d", "-x", "80", "-y", "24", "-s", name,
         f"env {exports} {IMM} --home {home}; echo imm exited $?; sleep 30")
    try:
        yield name
    finally:
        socket = tmux(name, "display-message", "-p", "#{socket_path}").strip()
        subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, stdin=subprocess.DEVNULL)
        Path(socket).unlink(missing_ok=True)  # tmux leaves it behind


@pytest.fixture
def session(tmp_path):
    with imm_in_tmux(tmp_path, make_snapshot_home(tmp_path / "home")) as name:
        yield name


def keys(session: str, *names: str) -> None:
    tmux(session, "send-keys", "-t", session, *names)


def text(session: str, typed: str) -> None:
    tmux(session, "send-keys", "-t", session, "-l", typed)


def test_installed_imm_in_tmux(session):
    assert IMM.exists(), f"{IMM}: install the project (pip install -e .)"
    first = wait_for_screen(session, RUN_DONE)
    assert "done" in first and "interrupted" in first
    tmux(session, "send-keys", "-t", session, "Down", "Down", "Down", "Enter")  # the app reads them in order
    wait_for_screen(session, f"{RUN_DONE} · done")  # the fourth row's run opened
    tmux(session, "send-keys", "-t", session, "3")
    results = wait_for_screen(session, "Merge2")
    assert "Base" in results and "SFT1" in results and "arith_add3" in results
    tmux(session, "send-keys", "-t", session, "q")  # quits: the pane's shell line takes over


def test_new_run_dry_run_then_launch_keeps_the_app_up(tmp_path):
    """ctrl+d then ctrl+r: the run starts and the app stays up (the dry run's zero-delay timer
    used to end it with a ZeroDivisionError when the form closed)."""
    from engine import api

    home = tmp_path / "home"
    with imm_in_tmux(tmp_path, home) as session:
        wait_for_screen(session, "No runs in")
        keys(session, "n")
        wait_for_screen(session, "plan of tiny-arith", 60)  # the plan of the default preset
        keys(session, "C-d")
        wait_for_screen(session, "plan of tiny-arith", 60)
        keys(session, "C-r")  # the engine it starts is killed below, once the app shows the run
        try:
            screen = wait_for_screen(session, "Progress", 60)
            [run] = api.list_runs(home)
            assert run.id in screen
            keys(session, "Escape")
            wait_for_screen(session, "Status")  # the runs table (an escape and a q sent together read as alt+q)
            keys(session, "q")
            wait_for_screen(session, "imm exited 0")
        finally:
            for r in api.list_runs(home):
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.killpg(r.pid, signal.SIGKILL)


def test_export_onto_an_existing_file_asks_and_keeps_it_on_no(tmp_path):
    target = tmp_path / "notes.md"
    target.write_text("IMPORTANT DATA\n")
    with imm_in_tmux(tmp_path, make_snapshot_home(tmp_path / "home")) as session:
        wait_for_screen(session, f"{RUN_INTERRUPTED} ·")  # the line under the table: a run is highlighted
        keys(session, "e")
        wait_for_screen(session, "Results as Markdown")
        keys(session, "Tab", "End", "C-u")  # the path field, emptied
        text(session, str(target))
        keys(session, "Enter")
        wait_for_screen(session, "exists. Replace it")
        keys(session, "n")
        wait_for_screen(session, "nothing written")
        assert target.read_text() == "IMPORTANT DATA\n"
        keys(session, "Enter")
        wait_for_screen(session, "exists. Replace it")
        keys(session, "y")
        wait_for_screen(session, "wrote")
        assert target.read_text().startswith("| checkpoint |")


def app_pid(session: str) -> int:
    """The app's process: the pane's shell runs `env ... imm`, which execs imm."""
    shell = tmux(session, "display-message", "-p", "-t", session, "#{pane_pid}").strip()
    return int(subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True, check=True).stdout.split()[0])


def test_keys_typed_while_the_app_is_stopped_apply_in_the_order_typed(tmp_path):
    """The app stopped (SIGSTOP) while End, ctrl+u, a path and Enter are typed into the export
    dialog, as keys queue up behind a busy machine: once it runs again the path is written. Textual
    ran the field's ctrl+u after the characters typed behind it, so the path was deleted and the
    field stayed empty (textual#6605)."""
    target = tmp_path / "r.md"
    with imm_in_tmux(tmp_path, make_snapshot_home(tmp_path / "home")) as session:
        wait_for_screen(session, f"{RUN_INTERRUPTED} ·")
        keys(session, "e")
        wait_for_screen(session, "Results as Markdown")
        keys(session, "Tab")
        wait_for_screen(session, "┃  ./")
        pid = app_pid(session)
        os.kill(pid, signal.SIGSTOP)
        try:
            keys(session, "End", "C-u")
            text(session, str(target))
            keys(session, "Enter")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for_screen(session, "wrote")
    assert target.read_text().startswith("| checkpoint |")


def test_an_adopted_trial_is_marked_in_config_results_and_export(tmp_path):
    """Trial 1 adopted as Merge1 (recorded by the engine's writer, as `imm sweep --adopt` does):
    the Config tab, the Results tab and the exported Markdown say so, with its alpha and p."""
    from test_app_user_flows import MARK, adopt_in_fixture

    home = make_snapshot_home(tmp_path / "home")
    adopt_in_fixture(home)
    with imm_in_tmux(tmp_path, home) as session:
        wait_for_screen(session, RUN_DONE)
        for _ in range(3):
            keys(session, "Down")
        wait_for_screen(session, f"{RUN_DONE} ·")  # the line under the table names the highlighted run
        keys(session, "Enter")
        wait_for_screen(session, "Progress")
        keys(session, "6")
        wait_for_screen(session, "# Merge1 is adopted trial 1")
        keys(session, "3")
        wait_for_screen(session, "Merge1†")
        keys(session, "Escape")
        wait_for_screen(session, "Status")  # the runs table (an escape and an e sent together read as alt+e)
        keys(session, "e")
        wait_for_screen(session, "Results as Markdown")
        keys(session, "Tab")
        wait_for_screen(session, "┃  ./")  # the path field has focus (heavy border) before anything is typed into it
        keys(session, "End", "C-u")
        text(session, str(tmp_path / "r.md"))
        wait_for_screen(session, "r.md")  # typed under load, it has landed before enter writes it
        keys(session, "Enter")
        wait_for_screen(session, "wrote")
    assert MARK in (tmp_path / "r.md").read_text()


def seconds(shown: str) -> int:
    """The header's elapsed (42s, 14m05s, 3h07m) in seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([dhms])", shown))


def test_resume_in_the_app_keeps_elapsed_rising_and_the_sft_bar_from_the_restored_step(tmp_path, home):
    """A run killed after SFT's checkpoint at step 3, resumed with r: the header's elapsed never
    goes below what it was (it fell from 55 s to 43 s), and the bar goes on from the restored step
    (the resumed engine holds after its step-6 checkpoint, so the bar is read there)."""
    from test_loop import start_engine

    sets = [a for kv in FAST + ["sft.batch_size=2", "sft.checkpoint_every=3"] for a in ("--set", kv)]
    first = start_engine("run", str(TINY_PRESET), *sets, home=home, hold="1:sft:checkpoint3")
    run_id = first.stdout.readline().split()[1]
    holding = home / "runs" / run_id / "HOLDING"
    try:
        wait_until(holding.exists, what="the first attempt at SFT's step-3 checkpoint")
    finally:
        first.kill()
        first.wait()
    holding.unlink()
    with imm_in_tmux(tmp_path, home, IMM_TEST_HOLD="1:sft:checkpoint6") as session:
        wait_for_screen(session, run_id)
        keys(session, "Enter")
        header = wait_for_screen(session, f"{run_id} · interrupted")
        before = seconds(re.search(r"elapsed (\S+)", header)[1])
        keys(session, "r")
        wait_until(holding.exists, what="the resumed attempt at SFT's step-6 checkpoint")
        bar = wait_for_screen(session, "iter 1 sft · 6/")  # 3 steps restored, 3 trained now
        shown = [before]

        def read_elapsed():
            screen = tmux(session, "capture-pane", "-p", "-t", session)
            found = re.search(r"elapsed (\S+)", screen)
            if found:
                shown.append(seconds(found[1]))
            return " · done · " in screen

        read_elapsed()
        holding.unlink()
        wait_until(read_elapsed, what="the resumed run done", every=0.2)
    assert shown == sorted(shown), f"elapsed went down: {shown}"
    assert re.search(r"iter 1 sft · 6/\d+ steps", bar)
