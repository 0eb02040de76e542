"""The per-run lock: one engine (or sweep) at a time on a run, released by the kernel even on SIGKILL."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import RunStateError


@contextmanager
def run_lock(path: Path, run_id: str, wait: bool = False):
    """Hold the run's lock; a second holder is refused, or with `wait` (sweep workers: a worker
    that finds another one busy waits, then drains what is left of the queue) waits its turn."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunStateError(f"run {run_id} is already being run by pid {holder}; refusing to start a second engine")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.close()
