"""The driver: runs a run's pending stages in plan order and records each in SQLite.

A stage (engine.stages) writes its artifacts to temporary paths and renames them into place; the
driver marks it done (with its rows: metrics, diagnostics; in one transaction) only after that.
Done stages are skipped, so resuming after a crash or kill restarts the first unfinished stage;
the long ones continue from what they saved (SFT's training checkpoint, generation's and
evaluation's finished chunks). Every stage seeds its randomness from (run seed, iteration, stage),
so a resumed run produces the same results as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import os
import random
import signal
from pathlib import Path

from .config import resolve
from .console import ConsoleEcho
from .cpu_threads import CoreWatch, choose_threads, with_wait_policy
from .errors import StopRequested
from .plain_text import clean
from .runstate.lock import run_lock
from .runstate.lookup import require_run
from .runstate.names import PEAK_GPU_KEY, RunStatus, Stage, StageStatus
from .runstate.paths import require_run_folder, run_paths
from .runstate.plan import config_copy_ok, write_config_copy
from .runstate.reader import stored_config
from .runstate.progress import ProgressReporter
from .runstate.steps import StepRecorder
from .runstate.store import Store, now
from .runstate.system_history import SystemHistory
from .stage_errors import fail_for_test, stage_error
from .stages import STAGES, StageContext, stage_seed
from .stages.context import hold_for_test
from .trackers import Trackers, no_trackers, open_trackers


def engine_process_env() -> None:
    """This process runs stages: the short OpenMP wait (engine.cpu_threads; a detached engine has
    it from its launcher already, a foreground `imm run` gets it here, before stages load torch),
    and no tqdm bars from transformers, the hub or anything else in engine.log / engine.out (nor in
    the DeepSpeed child, which inherits the environment): progress is data (the progress table).
    Only an engine process calls this: importing `engine` changes no environment variable."""
    with_wait_policy(os.environ)
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class PlainFormatter(logging.Formatter):
    """Log lines as plain text: what a model, a data file or a child process said may hold escape
    sequences, which must not reach the terminal that echoes the log (or `tail`s engine.log)."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record))


def make_logger(run_id: str, path: Path, echo: bool) -> logging.Logger:
    """The run's logger: its engine.log, and stderr too when `echo` (until stderr goes away)."""
    log = logging.getLogger(f"imm.{run_id}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for old in log.handlers:
        old.close()
    log.handlers.clear()
    fmt = PlainFormatter("%(asctime)s %(message)s", "%H:%M:%S")
    for h in [logging.FileHandler(path)] + ([ConsoleEcho(log)] if echo else []):
        h.setFormatter(fmt)
        log.addHandler(h)
    return log


def open_run(store: Store, run_id: str, echo: bool = True) -> StageContext:
    """The run as stages see it (seeded with the run's seed until a stage gets its own)."""
    row = require_run(store.run(run_id), run_id, store.home)
    cfg, paths = resolve(stored_config(row)), run_paths(store.home, row["run_dir"])
    require_run_folder(row["id"], paths, any(s["status"] == StageStatus.DONE for s in store.stages(row["id"])))
    ctx = StageContext(cfg, row["id"], paths, store.home, cfg.seed, make_logger(row["id"], paths.log, echo).info)
    if not config_copy_ok(paths):
        write_config_copy(paths, stored_config(row))
        ctx.log(f"{paths.config} was missing or damaged: written again from the database")
    return ctx


def use_free_cores(ctx: StageContext, watch: CoreWatch) -> None:
    """Before each stage: torch's CPU threads for the cores free now (engine.cpu_threads); the
    log says the count and why whenever it changes."""
    import torch

    threads, why = choose_threads(ctx.cfg.threads, watch)
    if threads != watch.threads:
        torch.set_num_threads(threads)
        watch.threads = threads
        ctx.log(f"cpu threads: {threads} ({why})")


def run_engine(store: Store, run_id: str, echo: bool = True) -> RunStatus:
    """Run every pending stage of the run; returns its final status (done or stopped). SIGTERM or
    a STOP file stops it at the next safe point: a stage boundary, or one inside a stage
    (ctx.safe_point)."""
    engine_process_env()
    ctx = open_run(store, run_id, echo)
    sigterm = []
    watch = CoreWatch()

    def on_sigterm(*_):
        sigterm.append(True)
        ctx.log("stop requested (SIGTERM): stopping at the next safe point")

    ctx.stop_requested = lambda: bool(sigterm) or ctx.paths.stop_request.exists()

    with run_lock(ctx.paths.lock, ctx.run_id):
        ctx.paths.stop_request.unlink(missing_ok=True)
        previous = signal.signal(signal.SIGTERM, on_sigterm)
        trackers = no_trackers()
        try:
            store.update_run(ctx.run_id, status=RunStatus.RUNNING, pid=os.getpid(), error=None)
            ctx.log(f"run {ctx.run_id}: engine pid {os.getpid()}")
            trackers = open_trackers(ctx.cfg.report_to, ctx.run_id, ctx.paths.root, store.home, ctx.cfg.to_dict(), ctx.log)
            history = SystemHistory(store.home, ctx.run_id, Store.another_connection, ctx.log)
            for row in store.stages(ctx.run_id):
                if row["status"] == StageStatus.DONE:
                    continue
                use_free_cores(ctx, watch)
                if ctx.stop_requested() or not run_stage(store, ctx, row["iteration"], Stage(row["stage"]), trackers, history):
                    ctx.paths.stop_request.unlink(missing_ok=True)
                    store.update_run(ctx.run_id, status=RunStatus.STOPPED, pid=None)
                    ctx.log("stopped at a safe point; `imm resume` continues from here")
                    return RunStatus.STOPPED
            store.update_run(ctx.run_id, status=RunStatus.DONE, pid=None)
            ctx.log(f"run {ctx.run_id} finished")
            return RunStatus.DONE
        finally:
            trackers.close()
            signal.signal(signal.SIGTERM, previous)


def run_stage(store: Store, ctx: StageContext, t: int, stage: Stage, trackers: Trackers | None = None,
              history: SystemHistory | None = None) -> bool:
    """One stage: marked running, seeded, run, then marked done with its rows (or failed). False
    when it stopped at a safe point on request: it is pending again, and resuming continues it.
    While it runs, `history` samples the machine; its SFT steps and results go to `trackers` too."""
    import torch

    store.start_stage(ctx.run_id, t, stage)
    ctx.log(f"[iter {t}] {stage}: started")
    seed = stage_seed(ctx.cfg.seed, t, stage)
    random.seed(seed)
    torch.manual_seed(seed)
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    trackers = trackers if trackers is not None else no_trackers()
    progress = ProgressReporter(functools.partial(store.set_progress, ctx.run_id, t, stage))
    steps = StepRecorder(functools.partial(store.record_sft_steps, ctx.run_id, t),
                         functools.partial(store.trim_sft_steps, ctx.run_id, t), functools.partial(trackers.sft_steps, t))
    hold = functools.partial(hold_for_test, ctx.paths, t, stage)
    sampling = history.during(t, stage) if history is not None else contextlib.nullcontext()
    try:
        with sampling:
            hold("start")
            fail_for_test(t, stage)
            result = STAGES[stage](dataclasses.replace(ctx, seed=seed, progress=progress, steps=steps, hold=hold), t)
            steps.flush()
            hold("end")
    except StopRequested as exc:
        steps.flush()
        store.set_stage(ctx.run_id, t, stage, status=StageStatus.PENDING, ended=now())
        ctx.log(f"[iter {t}] {stage}: {exc}")
        return False
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the curve up to the failure; never in the error's way
            steps.flush()
        error = stage_error(exc, ctx.cfg, ctx.run_id, stage)
        store.set_stage(ctx.run_id, t, stage, status=StageStatus.FAILED, ended=now(), error=error)
        store.update_run(ctx.run_id, status=RunStatus.FAILED, pid=None, error=f"[iter {t}] {stage}: {error}")
        ctx.log(f"[iter {t}] {stage}: failed: {error}")
        raise
    finally:
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()
    info = dict(result.info)
    if on_gpu:  # this process's peak; the deepspeed backend's info already holds its workers'
        info.setdefault(PEAK_GPU_KEY, round(torch.cuda.max_memory_allocated() / 2**30, 2))
    store.finish_stage(ctx.run_id, t, stage, artifact=str(result.artifact or ""), info=info, rows=result.rows)
    trackers.stage_done(t, stage, info, result.rows)
    ctx.log(f"[iter {t}] {stage}: " + " ".join(["done", *(f"{k}={v}" for k, v in info.items())]))
    return True
