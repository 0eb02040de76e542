"""The machine's load during each stage, stored with the run (table system_samples), so that the
System view of a finished run shows where the box was idle.

A daemon thread samples every INTERVAL_S seconds (CPU over the interval, memory, each GPU through
NVML) while a stage runs, and writes every BATCH samples (and at the stage's end) through its own
connection to imm.db: the engine stays the only writing process, and the stage's thread never
waits for these commits. Rows stay bounded: once a stage holds MAX_ROWS, every other row goes and
the interval doubles, so a long stage keeps its whole span at a coarser step.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .machine import Sampler

INTERVAL_S = 2.0
BATCH = 5
MAX_ROWS = 1800  # an hour at 2 s; a 10-hour stage at 16 s
MIN_LAST_S = 0.2  # a stage's last sample, when at least this long after the one before


def sample_row(sampler: Sampler) -> dict:
    s = sampler.sample()
    return {"ts": time.time(), "cpu_pct": round(s.cpu, 1), "mem_used": s.mem_used, "mem_total": s.mem_total,
            "gpus": json.dumps([{"index": g.index, "name": g.name, "util": g.util, "mem_used": g.mem_used,
                                 "mem_total": g.mem_total} for g in s.gpus])}


class SystemHistory:
    """`with history.during(t, stage):` samples while the stage runs. `open_store(home)` gives the
    thread its writer (engine.runstate.store.Store)."""

    def __init__(self, home: Path, run_id: str, open_store: Callable, log: Callable[[str], None] = print,
                 interval: float = INTERVAL_S, max_rows: int = MAX_ROWS, sampler_factory: Callable[[], Sampler] = Sampler):
        self.home, self.run_id, self.open_store, self.log = Path(home), run_id, open_store, log
        self.interval, self.max_rows, self.sampler_factory = interval, max_rows, sampler_factory
        self._warned = False

    @contextmanager
    def during(self, t: int, stage: str):
        stop = threading.Event()
        thread = threading.Thread(target=self._sample, args=(t, str(stage), stop), name=f"system-history-{t}-{stage}",
                                  daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)

    def _sample(self, t: int, stage: str, stop: threading.Event) -> None:
        try:
            sampler = self.sampler_factory()
            sampler.cores()  # the first reading covers the time since boot: a baseline only
            store = self.open_store(self.home)
        except Exception as exc:  # noqa: BLE001 - no /proc (not Linux), a locked database: no history, the stage runs
            self._warn(exc)
            return
        try:
            rows, interval, last = [], self.interval, time.monotonic()
            stored = store.count_system_samples(self.run_id, t, stage)
            while True:
                stopped = stop.wait(interval)
                if not stopped or time.monotonic() - last >= MIN_LAST_S:
                    rows.append(sample_row(sampler))
                    last = time.monotonic()
                if rows and (stopped or len(rows) >= BATCH):
                    store.add_system_samples(self.run_id, t, stage, rows)
                    stored, rows = stored + len(rows), []
                    if stored >= self.max_rows:
                        store.thin_system_samples(self.run_id, t, stage)
                        stored, interval = store.count_system_samples(self.run_id, t, stage), interval * 2
                if stopped:
                    return
        except Exception as exc:  # noqa: BLE001 - the history is an aid: its failure never fails the stage
            self._warn(exc)
        finally:
            store.db.close()

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            self.log(f"system history: not recorded ({type(exc).__name__}: {exc})")
