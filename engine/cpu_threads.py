"""CPU threads on a shared machine: how many torch threads a stage uses, and how they wait.

With libgomp's default wait (about 300,000 spins before sleeping) a torch thread whose partner was
descheduled by another process burns its core spinning, so two threads on two busy cores ran the
tiny default 10-30x slower (benchmarks/RESULTS.md). Two measures keep the slow-down in proportion
to the load (benchmarks/busy_bench.py):

- `WAIT_ENV`: a short spin before a waiting thread sleeps. libgomp reads it once, when torch loads
  it, so `engine/__init__.py` puts it in the environment before anything imports torch, and the
  detached engine and the DeepSpeed child get it in theirs. A value the user set is kept.
- `threads = "auto"` (the config's default): before each stage, as many threads as there are cores
  that other processes left free (`CoreWatch`); `threads = N` fixes it, and so does
  OMP_NUM_THREADS when set (the environment's explicit choice).

No torch here: the run state imports this module.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

# GOMP_SPINCOUNT: spins before a waiting OpenMP thread sleeps (libgomp's default 300,000; 0 is
# OMP_WAIT_POLICY=PASSIVE). Measured with 2 threads on 2 cores (tiny model, training steps and
# generation): 0 cost the idle machine 14-40%; 1,000 kept idle speed within noise and, next to a
# busy process, ran 1.8x slower where 300,000 ran 3-3.5x slower.
WAIT_ENV = {"GOMP_SPINCOUNT": "1000"}
# How long the first look at the machine watches /proc/stat (later looks use the stage just run).
FIRST_WINDOW_S = 0.2


def with_wait_policy(env: dict) -> dict:
    """`env` with the short OpenMP wait added where the user has not set one (in place)."""
    if "OMP_WAIT_POLICY" not in env:
        for key, value in WAIT_ENV.items():
            env.setdefault(key, value)
    return env


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def _busy_ticks() -> int | None:
    """Busy clock ticks (everything but idle and iowait) summed over the CPUs this process may use."""
    mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *ticks = line.split()
        if name in mine:
            values = [int(t) for t in ticks[:8]]
            busy += sum(values) - values[3] - values[4]
    return busy


def _own_ticks() -> float:
    """CPU time of this process and of its children that ended (the DeepSpeed child), in ticks."""
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")


@dataclass
class CoreWatch:
    """Cores left free by other processes since the last look: busy ticks of this process's CPUs
    in /proc/stat minus its own CPU time, over the wall time between two looks."""

    ticks: int | None = None
    own: float = 0.0
    at: float = 0.0
    threads: int = 0  # the count last set (0: none yet)

    def look(self) -> float | None:
        """Free cores (0 to usable_cores()) since the last look, or None where /proc/stat is unreadable;
        the first look watches FIRST_WINDOW_S."""
        if self.ticks is None:
            self._mark()
            time.sleep(FIRST_WINDOW_S)
        ticks, own, at = self.ticks, self.own, self.at
        if not self._mark():
            return None
        others = (self.ticks - ticks - (self.own - own)) / os.sysconf("SC_CLK_TCK") / max(self.at - at, 1e-3)
        return min(max(usable_cores() - others, 0.0), float(usable_cores()))

    def _mark(self) -> bool:
        self.ticks, self.own, self.at = _busy_ticks(), _own_ticks(), time.monotonic()
        return self.ticks is not None


def parse_setting(setting: int | str) -> int | None:
    """The fixed thread count of a `threads` setting (or of OMP_NUM_THREADS), None for auto."""
    if setting != "auto":
        return int(setting)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def choose_threads(setting: int | str, watch: CoreWatch) -> tuple[int, str]:
    """(threads, why) for the next stage."""
    fixed = parse_setting(setting)
    if fixed is not None:
        source = "threads setting" if setting != "auto" else "OMP_NUM_THREADS"
        return fixed, f"{source} {fixed}"
    cores = usable_cores()
    free = watch.look()
    if free is None:
        return cores, f"auto: {cores} cores (load unreadable)"
    return max(1, min(cores, int(free + 0.5))), f"auto: {free:.1f} of {cores} cores free"
