"""The installed `imm` in a real terminal (tmux, TERM=xterm-256color, 80x24): keys go in with
send-keys, the screen comes back with capture-pane. On the fixed home: the first screen lists the
finished run, Enter opens it, key 3 shows its Results table."""
from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app_fixtures import RUN_DONE, make_snapshot_home
from conftest import wait_until

IMM = Path(sys.executable).parent / "imm"
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (CI installs it with apt-get)")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def wait_for_screen(session: str, text: str, timeout: float = 120.0) -> str:
    def shown():
        screen = tmux("capture-pane", "-p", "-t", session)
        return screen if text in screen else None
    try:
        return wait_until(shown, timeout, f"{text!r} on screen", every=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the screen:\n{tmux('capture-pane', '-p', '-t', session)}") from None


@pytest.fixture
def session(tmp_path):
    home = make_snapshot_home(tmp_path / "home")
    name = f"imm-test-{uuid.uuid4().hex[:8]}"
    env = {"TERM": "xterm-256color", "TZ": "UTC", "IMM_PRESETS_DIR": str(tmp_path / "presets")}
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", name,
         f"env {exports} {IMM} --home {home}; sleep 30")
    try:
        yield name
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_installed_imm_in_tmux(session):
    assert IMM.exists(), f"{IMM}: install the project (pip install -e .)"
    first = wait_for_screen(session, RUN_DONE)
    assert "done" in first and "interrupted" in first
    tmux("send-keys", "-t", session, "Down", "Down", "Down", "Enter")  # the app reads them in order
    wait_for_screen(session, f"{RUN_DONE} · done")  # the fourth row's run opened
    tmux("send-keys", "-t", session, "3")
    results = wait_for_screen(session, "Merge2")
    assert "Base" in results and "SFT1" in results and "arith_add3" in results
    tmux("send-keys", "-t", session, "q")  # quits: the pane's shell line takes over
