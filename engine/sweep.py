"""Alpha / drop-rate sweeps on a finished iteration: re-merge base, prev and SFT_T with other
(alpha, p), evaluate each trial on the run's tasks, record it in SQLite, and optionally adopt a
trial as the iteration's merge so the next iteration continues from it. Generation and SFT are
never re-run. A sweep holds the run's lock: it cannot race a running engine.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from .config import INT_MAX, SEED_MAX, check_alpha, check_drop_rate, resolve
from .cpu_threads import CoreWatch
from .driver import open_run, use_free_cores
from .errors import RunStateError, UserError
from .runstate.lock import run_lock
from .runstate.lookup import require_run
from .runstate.names import KEPT_ON_ADOPT, Stage, StageStatus
from .runstate.reader import stored_config
from .runstate.store import Store
from .stages import StageContext, stage_seed
from .stages.evaluate import evaluate_checkpoint
from .stages.merge import merge_into
from .trackers import open_trackers
from .domain import Checkpoint, Method, TrialStatus


def _stage(stages: list[dict], t: int, name: Stage) -> dict | None:
    return next((s for s in stages if s["iteration"] == t and s["stage"] == name), None)


def _check_iteration(run_id: str, iterations: int, stages: list[dict], t: int) -> None:
    sft = _stage(stages, t, Stage.SFT)
    if sft is None:
        raise UserError(f"--iter: got {t}; allowed: an iteration of run {run_id} (1..{iterations})")
    if sft["status"] != StageStatus.DONE:
        raise RunStateError(f"iteration {t} of run {run_id} has no finished SFT checkpoint yet")


def trial_folder(ctx: StageContext, t: int, alpha: float, p: float, seed: int) -> Path:
    return ctx.paths.sweeps(t) / f"alpha{alpha:g}_p{p:g}_seed{seed}"


def eval_context(ctx: StageContext, t: int) -> StageContext:
    """ctx seeded as iteration t's eval stage, so a trial is scored on the prompts the run used."""
    return dataclasses.replace(ctx, seed=stage_seed(ctx.cfg.seed, t, Stage.EVAL))


def queue_sweep(store: Store, run_id: str, t: int, alphas: list[float], drops: list[float], seed: int | None = None,
                subset: int = 0, keep_weights: bool = False) -> list[int]:
    """Queue one trial per (alpha, p) for the sweep worker; returns their ids. seed defaults to the
    run's own merge seed for iteration t, so the run's (alpha, p) reproduces its merge exactly."""
    for a in alphas:
        check_alpha("--alpha", a)
    for p in drops:
        check_drop_rate("--drop", p)
    if not 0 <= subset <= INT_MAX["tasks.eval_size"]:
        raise UserError(f"--subset: got {subset}; allowed: 0 (all) or a number of questions up to {INT_MAX['tasks.eval_size']}")
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise UserError(f"--seed: got {seed}; allowed: an integer in [0, {SEED_MAX}]")
    row, cfg = run_config(store, run_id)
    _check_iteration(row["id"], cfg.iterations, store.stages(row["id"]), t)
    seed = stage_seed(cfg.merge.seed, t, Stage.MERGE) if seed is None else seed
    specs = [{"alpha": a, "drop_rate": p, "seed": seed, "subset": subset, "keep_weights": keep_weights}
             for a in alphas for p in drops]
    return store.queue_trials(row["id"], t, specs)


def work_queue(store: Store, run_id: str, log: Callable[[str], None] | None = None) -> str:
    """Run the run's queued trials, oldest first, until none is left; each trial's row is
    recorded as it finishes. Holds the run's lock: it cannot race the loop or another worker."""
    ctx = open_run(store, run_id, echo=log is None)
    log = log or ctx.log
    with run_lock(ctx.paths.lock, ctx.run_id, wait=True):
        store.requeue_running_trials(ctx.run_id)
        store.update_run(ctx.run_id, sweep_pid=os.getpid())
        watch = CoreWatch()
        trackers = open_trackers(ctx.cfg.report_to, ctx.run_id, ctx.paths.root, store.home, ctx.cfg.to_dict(), log)
        try:
            while (trial := store.claim_trial(ctx.run_id)) is not None:
                use_free_cores(ctx, watch)
                try:
                    run_trial(store, ctx, trial, log)
                except Exception as exc:
                    store.fail_trial(trial["id"], f"{type(exc).__name__}: {exc}")
                    log(f"trial {trial['id']} failed: {type(exc).__name__}: {exc}")
                else:
                    t = trial["iteration"]
                    trackers.trials(t, [{**tr, "results": json.loads(tr["results"])} for tr in store.trials(ctx.run_id, t)
                                        if tr["status"] == TrialStatus.DONE])
        finally:
            trackers.close()
            store.update_run(ctx.run_id, sweep_pid=None)
    return "sweep done"


def run_trial(store: Store, ctx: StageContext, trial: dict, log: Callable[[str], None]) -> None:
    t, alpha, p, seed = trial["iteration"], trial["alpha"], trial["drop_rate"], trial["seed"]
    keep = trial["weights"] == "keep"
    start = time.perf_counter()
    out = trial_folder(ctx, t, alpha, p, seed)
    merge_into(ctx, t, out, alpha, p, seed)
    rows = evaluate_checkpoint(eval_context(ctx, t), str(out), "trial", t, size=trial["subset"] or None,
                               samples_path=out.parent / f"{out.name}.eval.jsonl")
    if not keep:
        shutil.rmtree(out)
    seconds = time.perf_counter() - start
    store.finish_trial(trial["id"], rows, seconds, str(out) if keep else None)
    log(f"trial {trial['id']}: alpha {alpha:g}, p {p:g}: "
        + ", ".join(f"{r['task']} {r['value']:.1f}%" for r in rows if r["metric"] == "pass@1") + f" ({seconds:.1f} s)")


def run_config(store: Store, run_id: str):
    """(run row, resolved config) without opening the run's log."""
    row = require_run(store.run(run_id), run_id, store.home)
    return row, resolve(stored_config(row))


def check_adoptable(store: Store, run_id: str, t: int, trial_id: int) -> None:
    """Nothing when trial `trial_id` can become iteration t's merge; else the error a user can act on."""
    row, cfg = run_config(store, run_id)
    stages = store.stages(row["id"])
    _check_iteration(row["id"], cfg.iterations, stages, t)
    if cfg.method != Method.IMM:
        raise UserError(f"--adopt: run {row['id']} uses method '{cfg.method}'; allowed: runs of method 'imm'")
    if not any(x["id"] == trial_id and x["status"] == TrialStatus.DONE for x in store.trials(row["id"], t)):
        raise UserError(f"--adopt: got {trial_id}; allowed: a finished trial id of iteration {t} "
                        f"(see `imm sweep {row['id']} --iter {t} --list`)")
    merge = _stage(stages, t, Stage.MERGE)
    if merge is None or merge["status"] != StageStatus.DONE:
        raise RunStateError(f"iteration {t} of run {row['id']} has not finished its merge yet; resume it first")


def adopt(store: Store, run_id: str, t: int, trial_id: int, log: Callable[[str], None] | None = None) -> None:
    """Make trial `trial_id` iteration t's merge: Merge_t is re-made with the trial's (alpha, p,
    seed), re-evaluated on the full eval set, and every later stage goes back to pending, so
    `imm resume` continues from it. The outcome goes to the run's engine.log (and to `log`)."""
    check_adoptable(store, run_id, t, trial_id)
    ctx = open_run(store, run_id, echo=False)
    stages = store.stages(ctx.run_id)
    trial = next(x for x in store.trials(ctx.run_id, t) if x["id"] == trial_id)
    with run_lock(ctx.paths.lock, ctx.run_id):
        final = ctx.paths.merged(t)
        info = merge_into(ctx, t, final, trial["alpha"], trial["drop_rate"], trial["seed"])
        metrics = evaluate_checkpoint(eval_context(ctx, t), str(final), str(Checkpoint.merge(t)), t)
        later = [(s["iteration"], s["stage"]) for s in stages
                 if s["iteration"] > t or (s["iteration"] == t and s["stage"] not in KEPT_ON_ADOPT)]
        info["adopted_trial"] = trial_id
        store.adopt_trial(ctx.run_id, t, trial_id, info, metrics, later)
    done = f"trial {trial_id} adopted as Merge{t}" + (f"; {len(later)} later stages reset: imm resume {ctx.run_id}" if later else "")
    ctx.log(done)
    if log is not None:
        log(done)

