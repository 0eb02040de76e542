"""CPU threads on a shared machine: how many torch threads a stage uses, and how they wait.

With libgomp's default wait (about 300,000 spins before sleeping) a torch thread whose partner was
descheduled by another process burns its core spinning, so two threads on two busy cores ran the
tiny default 10-30x slower (benchmarks/RESULTS.md). Two measures keep the slow-down in proportion
to the load (benchmarks/busy_bench.py):

- `WAIT_ENV`: a short spin before a waiting thread sleeps. libgomp reads it once, when torch loads
  it, so an engine process puts it in its environment before its stages import torch
  (engine.driver.engine_process_env), and the detached engine and the DeepSpeed child get it from
  their launchers. Importing `engine` sets nothing. A value the user set is kept.
- `threads = "auto"` (the config's default): before each stage, as many threads as there are cores
  that other processes left free (`CoreWatch`); `threads = N` fixes it, and so does
  OMP_NUM_THREADS when set (the environment's explicit choice).

No torch here: the run state imports this module. CPU times come from psutil (as the machine
sampler's, engine.runstate.machine, through `busy_seconds`).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

Env = TypeVar("Env", bound=MutableMapping[str, str])

# GOMP_SPINCOUNT: spins before a waiting OpenMP thread sleeps (libgomp's default 300,000; 0 is
# OMP_WAIT_POLICY=PASSIVE). Measured with 2 threads on 2 cores (tiny model, training steps and
# generation): 0 cost the idle machine 14-40%; 1,000 kept idle speed within noise and, next to a
# busy process, ran 1.8x slower where 300,000 ran 3-3.5x slower.
WAIT_ENV = {"GOMP_SPINCOUNT": "1000"}
# How long the first look at the machine watches the CPUs (later looks use the stage just run).
FIRST_WINDOW_S = 0.2


def with_wait_policy(env: Env) -> Env:
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


def busy_seconds(times) -> tuple[float, float]:
    """(busy, total) seconds of one CPU's psutil.cpu_times: busy is all but idle and iowait;
    the total leaves out guest time, which Linux counts in user time already."""
    values = tuple(times)[:8]  # user, nice, system, idle, iowait, irq, softirq, steal
    return sum(values) - times.idle - getattr(times, "iowait", 0.0), sum(values)


def _busy() -> float | None:
    """Busy seconds summed over the CPUs this process may use."""
    try:
        per_cpu = psutil.cpu_times(percpu=True)
    except OSError:
        return None
    return sum(busy_seconds(per_cpu[i])[0] for i in os.sched_getaffinity(0) if i < len(per_cpu))


def _own() -> float:
    """CPU seconds of this process and of its children that ended (the DeepSpeed child)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class CoreWatch:
    """Cores left free by other processes since the last look: busy time of this process's CPUs
    minus its own CPU time, over the wall time between two looks."""

    busy: float | None = None
    own: float = 0.0
    at: float = 0.0
    threads: int = 0  # the count last set (0: none yet)

    def look(self) -> float | None:
        """Free cores (0 to usable_cores()) since the last look, or None where CPU times are
        unreadable; the first look watches FIRST_WINDOW_S."""
        if self.busy is None:
            self._mark()
            time.sleep(FIRST_WINDOW_S)
        busy, own, at = self.busy, self.own, self.at
        if busy is None or not self._mark() or self.busy is None:
            return None
        others = (self.busy - busy - (self.own - own)) / max(self.at - at, 1e-3)
        return min(max(usable_cores() - others, 0.0), float(usable_cores()))

    def _mark(self) -> bool:
        self.busy, self.own, self.at = _busy(), _own(), time.monotonic()
        return self.busy is not None


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
