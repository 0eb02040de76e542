"""Starting the engine as a detached process (own session: it survives the terminal's hang-up)
and asking a running engine to stop at its next safe point."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .runs import RunPaths


def engine_command(home: Path, run_id: str) -> list[str]:
    return [sys.executable, "-m", "engine", "resume", run_id, "--home", str(home)]


def spawn_detached(home: Path, run_id: str, paths: RunPaths) -> int:
    """Start `python -m engine resume RUN` in a new session; its output goes to engine.out."""
    project_root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(project_root), os.environ.get("PYTHONPATH")]))}
    with open(paths.out, "ab") as out:
        proc = subprocess.Popen(
            engine_command(home, run_id), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=str(paths.root),
        )
    return proc.pid


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def request_stop(paths: RunPaths) -> None:
    """Ask the engine to stop before its next stage (it deletes the request when it stops)."""
    paths.stop_request.write_text("stop requested\n")
