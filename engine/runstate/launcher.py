"""Starting engine processes detached (own session: they survive the terminal's hang-up), asking a
running engine to stop at its next safe point, and telling whether a recorded pid still runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..cpu_threads import with_wait_policy
from .paths import RunPaths, private_files


def engine_command(home: Path, run_id: str, job: str = "run", args: tuple[str, ...] = ()) -> list[str]:
    """`python -m engine JOB RUN --home HOME [ARGS]`: JOB is run (the loop), sweep (the sweep
    worker) or adopt (make a sweep trial the iteration's merge)."""
    return [sys.executable, "-m", "engine", job, run_id, "--home", str(home), *args]


def spawn_detached(home: Path, run_id: str, paths: RunPaths, job: str = "run", args: tuple[str, ...] = ()) -> int:
    """Start an engine process in a new session; its stdout and stderr go to engine.out. It runs the
    installed package (this interpreter's), from the run folder: nothing is looked up in a checkout."""
    env = with_wait_policy(dict(os.environ))
    with private_files(), open(paths.out, "ab") as out:
        proc = subprocess.Popen(
            engine_command(home, run_id, job, args), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
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
    """Ask the engine to stop at its next safe point (it deletes the request when it stops)."""
    paths.stop_request.write_text("stop requested\n")
