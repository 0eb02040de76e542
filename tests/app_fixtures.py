"""A deterministic home for the app's snapshot tests, written by the engine's own writers, called
as the engine calls them: `Store.create_run` with the stage plan, `start_stage` / `finish_stage` with
each stage's rows (metrics from eval, layer stats and verdicts from analyze), `update_run` for the
run's status, `set_progress`, and the sweep queue (`queue_trials`, `claim_trial`, `finish_trial`).
Only the ids, the Store's clock and the numbers are fixed here, so a change in what the writers
write shows in the snapshots. Tests only: the app itself never imports engine internals.

Runs (newest first in the runs table):
- RUN_INTERRUPTED: stored as running with an engine pid that cannot exist -> shows as interrupted;
  its name holds markup ("[bold]x[/foo]"); a progress row for its running SFT stage.
- RUN_STOPPED: stopped after SFT1, before its merge (base metrics).
- RUN_FAILED: vanilla, failed in SFT1 with an error.
- RUN_DONE: IMM, 2 iterations, all metrics (pass@1 and pass@4), layer stats + verdicts for both
  iterations (sft and merge), sweep trials of iteration 1 (3 done, 1 queued), a log with markup
  and an ESC sequence, iteration 1 samples (generated, kept, eval:sft1).

Use `freeze_clock(monkeypatch)` too: the elapsed time of a running stage counts up to "now".
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import engine.runstate.store as store_module
from engine.config import resolve
from engine.runstate.names import RunStatus, Stage, StageStatus
from engine.runstate.paths import RunPaths, run_paths
from engine.runstate.plan import plan, write_config_copy
from engine.runstate.store import Store

PROJECT = Path(__file__).resolve().parent.parent
TINY = PROJECT / "presets" / "tiny-arith.toml"
TINY_VANILLA = PROJECT / "presets" / "tiny-arith-vanilla.toml"

RUN_DONE = "tiny-arith-20261101-120000-abcd"
RUN_FAILED = "tiny-arith-vanilla-20261102-090000-beef"
RUN_STOPPED = "tiny-arith-20261103-100000-c0de"
RUN_INTERRUPTED = "tiny-arith-20261104-080000-dead"
MARKUP_NAME = "tiny [bold]x[/foo]"
DEAD_PID = 4_194_311  # above any Linux pid_max (2**22): never a live process
FAILED_ERROR = "CUDA out of memory. Tried to allocate 20.00 MiB [/foo]"

ID_TASK, OOD_TASKS = "arith_add3", ("arith_add4", "arith_mix3")
LAYERS = 4
MODULES = ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")


def ts(day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    """Epoch seconds of 2026-11-DAY HOUR:MINUTE:SECOND UTC."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=timezone.utc).timestamp()


FROZEN_NOW = ts(4, 9)  # the clock the snapshot tests stop at: an hour after RUN_INTERRUPTED started


def freeze_clock(monkeypatch) -> None:
    """Stop the API's clock (elapsed time of running stages) at FROZEN_NOW."""
    import engine.api.reads as reads

    class FrozenTime:
        @staticmethod
        def time() -> float:
            return FROZEN_NOW

    monkeypatch.setattr(reads, "time", FrozenTime)


# Pass@1 per checkpoint: (id, ood add4, ood mix3), in %.
PASS1 = {
    "base": (31.0, 12.0, 9.3),
    "sft1": (58.7, 14.3, 10.0),
    "merge1": (55.3, 21.7, 15.3),
    "sft2": (71.0, 13.0, 8.7),
    "merge2": (66.3, 24.0, 17.7),
}


def _metrics(checkpoints: list[str], pass4: bool = False) -> list[dict]:
    rows = []
    for ckpt in checkpoints:
        iteration = 0 if ckpt == "base" else int(ckpt[-1])
        for (task, domain), value in zip([(ID_TASK, "id")] + [(t, "ood") for t in OOD_TASKS], PASS1[ckpt]):
            rows.append({"checkpoint": ckpt, "iteration": iteration, "task": task, "domain": domain,
                         "metric": "pass@1", "value": value, "n": 300})
            if pass4:
                rows.append({"checkpoint": ckpt, "iteration": iteration, "task": task, "domain": domain,
                             "metric": "pass@4", "value": round(min(value * 1.4, 100.0), 1), "n": 300})
    return rows


def _layer_rows(iteration: int, checkpoint: str) -> list[dict]:
    """Importance rising with depth; SFT changes the early layers most (superficial), a merge
    scales the change down by alpha."""
    scale = 0.5 if checkpoint.startswith("merge") else 1.0
    importance = [1.0 + i + 0.25 * iteration for i in range(LAYERS)]
    change = [scale * (0.04 - 0.008 * i) * iteration for i in range(LAYERS)]
    rows = []
    for n in range(LAYERS):
        modules = {m: {"importance": round(importance[n] * (j + 1) / 10, 4),
                       "weight_change": round(change[n] * (len(MODULES) - j) / 10, 6)} for j, m in enumerate(MODULES)}
        rows.append({"iteration": iteration, "checkpoint": checkpoint, "layer": n, "importance": importance[n],
                     "importance_pct": round(100 * importance[n] / sum(importance), 2), "weight_change": change[n],
                     "weight_change_pct": round(100 * change[n] / sum(change), 2), "modules": json.dumps(modules)})
    return rows


def _verdict(iteration: int, checkpoint: str) -> dict:
    """Superficial everywhere but Merge2 (the runs table shows the latest verdict: aligned)."""
    spearman = {"sft": -1.0, "merge": -0.8}[checkpoint.rstrip("0123456789")]
    if checkpoint == "merge2":
        spearman = 0.4
    return {"iteration": iteration, "checkpoint": checkpoint, "spearman": spearman,
            "verdict": "aligned" if spearman >= 0.3 else "superficial",
            "threshold": 0.3, "top_importance": json.dumps([3]), "top_change": json.dumps([0]),
            "top_overlap": json.dumps([])}


class Clock:
    """What the Store's clock (engine.runstate.store.now) says while the fixture writes."""

    at = 0.0

    def __call__(self) -> float:
        return self.at


def _add_run(store: Store, clock: Clock, run_id: str, preset: Path, status: str, created: float, done: int, *,
             failed_error: str | None = None, running: bool = False, pid: int | None = None, name: str | None = None,
             rows=lambda t, stage: {}) -> RunPaths:
    """A run whose first `done` stages finished, 60 s each from `created` (stage (t, stage) with the
    rows `rows(t, stage)`); the next one failed (failed_error) or is running (running); the rest
    pending. The calls are the engine's (runstate.plan.create_run, driver.run_engine / run_stage)."""
    run_cfg = resolve(preset)
    cfg = run_cfg.to_dict()
    if name:
        cfg["name"] = name
    clock.at = created
    run_dir = f"runs/{run_id}"
    store.create_run({"id": run_id, "name": cfg["name"], "preset": str(preset.relative_to(PROJECT)),
                      "method": cfg["method"], "status": RunStatus.CREATED, "config": json.dumps(cfg),
                      "run_dir": run_dir}, plan(run_cfg))
    paths = run_paths(store.home, run_dir)
    paths.root.mkdir(parents=True)
    write_config_copy(paths, cfg)
    store.update_run(run_id, status=RunStatus.RUNNING, pid=pid, error=None)
    for i, (t, stage) in enumerate(plan(run_cfg)[:done + 1]):
        start = created + 60 * i
        if i == done and not (failed_error or running):
            break
        clock.at = start
        store.start_stage(run_id, t, stage)
        if i < done:
            clock.at = start + 60
            store.finish_stage(run_id, t, stage, artifact="", info={}, rows=rows(t, stage))
        elif failed_error:
            clock.at = start + 12
            store.set_stage(run_id, t, stage, status=StageStatus.FAILED, ended=clock.at, error=failed_error)
            store.update_run(run_id, status=RunStatus.FAILED, pid=None, error=f"[iter {t}] {stage}: {failed_error}")
    if status in (RunStatus.DONE, RunStatus.STOPPED):
        store.update_run(run_id, status=status, pid=None)
    assert store.run(run_id)["status"] == status
    return paths


def _eval_rows(checkpoints: list[str], pass4: bool = False):
    """rows(t, stage) for _add_run: the eval stage of iteration t writes its checkpoints' metrics."""
    def rows(t: int, stage: str) -> dict:
        if stage != Stage.EVAL:
            return {}
        return {"metrics": [m for m in _metrics(checkpoints, pass4) if m["iteration"] == t]}
    return rows


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _samples(paths: RunPaths) -> None:
    questions = [(f"add3-{i}", f"{i} + {i + 1} + {i + 2}", str(3 * i + 3)) for i in range(6)]
    generated = []
    for n, (qid, question, gold) in enumerate(questions):
        for temperature in (0.5, 1.0):
            ok = (n + int(temperature)) % 3 != 0
            answer = gold if ok else str(int(gold) + 1)
            completion = f"{question} = {answer}" if n != 2 else f"[bold]{question}[/foo] = \x1b[31m{answer}"
            generated.append({"id": qid, "question": question, "gold": gold, "temperature": temperature, "sample": 0,
                              "completion": completion, "extracted": answer, "correct": ok, "kept": ok,
                              "task": ID_TASK})
    _write_jsonl(paths.graded(1), generated)
    _write_jsonl(paths.kept(1), [{k: v for k, v in r.items() if k not in ("kept", "correct")}
                                 | {"response": r["completion"]} for r in generated if r["correct"]])
    evals = [{"task": task, "id": f"{task}-{i}", "question": f"{i} + 2 + 3", "gold": str(i + 5),
              "completion": f"{i} + 2 + 3 = {i + 5 + (i % 2)}", "extracted": str(i + 5 + (i % 2)), "correct": i % 2 == 0}
             for task in (ID_TASK, *OOD_TASKS) for i in range(4)]
    _write_jsonl(paths.eval_samples(1, "sft1"), evals)


LOG_DONE = [
    "12:00:00 run tiny-arith-20261101-120000-abcd: preset presets/tiny-arith.toml, 2 iterations, method imm",
    "12:01:00 [iter 0] build: base model ready",
    "12:02:00 [iter 0] eval base: arith_add3 pass@1 31.0, arith_add4 12.0, arith_mix3 9.3",
    "12:03:00 [iter 1] generate: temperature 0.5: 300 samples",
    "12:03:30 [iter 1] generate: a completion read [bold]x[/foo] \x1b[31mred\x1b[0m (shown literally)",
    "12:04:00 [iter 1] filter: kept 176 of 900 samples (19.6%)",
    "12:05:00 [iter 1] sft: epoch 2/2 loss 0.412",
    "12:06:00 [iter 1] merge: alpha 0.5, drop rate 0.1",
    "12:07:00 [iter 1] eval merge1: arith_add3 pass@1 55.3, arith_add4 21.7, arith_mix3 15.3",
    "12:08:00 [iter 1] analyze sft1: spearman(importance, weight change) = -1.0 -> superficial",
    "12:14:00 run done",
]


def make_snapshot_home(path: Path) -> Path:
    """Write the fixed home into `path` (created; must not hold a database yet) and return it."""
    home = Path(path)
    clock = Clock()
    with mock.patch.object(store_module, "now", clock):
        store = Store(home)
        _write_home(store, clock)
        store.db.conn.close()
    return home


def _write_home(store: Store, clock: Clock) -> None:
    add_stages = 1 + 1 + 2 * 6  # build, eval base, 2 iterations x (generate filter sft merge eval analyze)
    evals = _eval_rows(["base", "sft1", "merge1", "sft2", "merge2"], pass4=True)

    def done_rows(t: int, stage: str) -> dict:
        if stage == Stage.ANALYZE:  # the diagnostics of both checkpoints of the iteration
            return {"layer_stats": [r for ckpt in (f"sft{t}", f"merge{t}") for r in _layer_rows(t, ckpt)],
                    "verdicts": [_verdict(t, ckpt) for ckpt in (f"sft{t}", f"merge{t}")]}
        return evals(t, stage)

    done = _add_run(store, clock, RUN_DONE, TINY, "done", ts(1, 12), add_stages, rows=done_rows)
    for i, (alpha, drop, finished) in enumerate([(0.3, 0.1, True), (0.5, 0.1, True), (0.7, 0.0, True), (0.9, 0.0, False)]):
        clock.at = ts(1, 13, i)
        [trial] = store.queue_trials(RUN_DONE, 1, [{"alpha": alpha, "drop_rate": drop, "seed": 0, "subset": 0,
                                                    "keep_weights": False}])
        if finished:  # what the sweep worker does with it
            assert store.claim_trial(RUN_DONE)["id"] == trial
            results = [{"task": task, "domain": dom, "metric": "pass@1", "value": round(v + 10 * (alpha - 0.5), 1), "n": 300}
                       for (task, dom), v in zip([(ID_TASK, "id")] + [(t, "ood") for t in OOD_TASKS], PASS1["merge1"])]
            store.finish_trial(trial, results, 42.0 + i, None)
    clock.at = ts(1, 12, 12)
    store.set_progress(RUN_DONE, 2, Stage.EVAL, step=900, total=900, unit="questions", rate=30.0, tokens_per_s=None,
                       loss=None, started=ts(1, 12, 11))
    done.log.write_text("\n".join(LOG_DONE) + "\n")
    _samples(done)

    vanilla = _add_run(store, clock, RUN_FAILED, TINY_VANILLA, "failed", ts(2, 9), 4, failed_error=FAILED_ERROR,
                       rows=_eval_rows(["base"]))
    vanilla.log.write_text(f"09:04:00 [iter 1] sft failed: {FAILED_ERROR}\n")

    stopped = _add_run(store, clock, RUN_STOPPED, TINY, "stopped", ts(3, 10), 5, rows=_eval_rows(["base"]))
    stopped.log.write_text("10:05:00 stop requested: stopping after the running stage\n")

    dead = _add_run(store, clock, RUN_INTERRUPTED, TINY, "running", ts(4, 8), 4, running=True, pid=DEAD_PID,
                    name=MARKUP_NAME, rows=_eval_rows(["base"]))
    clock.at = ts(4, 8, 4, 20)
    store.set_progress(RUN_INTERRUPTED, 1, Stage.SFT, step=40, total=120, unit="steps", rate=2.0, tokens_per_s=5400.0,
                       loss=0.734, started=ts(4, 8, 4))
    dead.log.write_text("08:04:00 [iter 1] sft: step 40/120 loss 0.734 [/foo]\x1b[2J\n")
