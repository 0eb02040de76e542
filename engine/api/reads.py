"""Read functions of the API: SQLite (read-only) and run folders. They load no torch, numpy,
transformers, safetensors or sqlite-utils, and never write."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..domain import Domain, Method, TrialStatus
from ..errors import BrokenStateError, RunStateError
from ..runstate.launcher import pid_alive
from ..runstate.lookup import require_run
from ..runstate.machine import GpuReading
from ..runstate.names import RunStatus, Stage, StageStatus
from ..runstate.paths import home_dir, run_paths
from ..results_table import adoptions as adopted_checkpoints, result_order
from ..runstate.reader import Reader, stored_config
from .models import (
    Adoption, LayerStat, ModuleStat, Progress, ResultRow, RunDetail, RunSummary, Sample, StageRow, StepPoint,
    SystemPoint, Trial, Verdict, checkpoint_order,
)

# Where tail_log starts when a caller has no offset yet: the last this many bytes of the log.
TAIL_START_BYTES = 256 * 1024


def reader(home=None) -> Reader:
    return Reader(home_dir(home))


def find_run(r: Reader, run: str) -> dict:
    """The run row for an id or a unique id prefix; RunStateError when there is none."""
    return require_run(r.run(run), run, r.home)


def live_status(row: dict) -> str:
    """The stored status, except that a running run whose engine is gone shows as interrupted."""
    if row["status"] == RunStatus.RUNNING and not pid_alive(row["pid"]):
        return RunStatus.INTERRUPTED
    return row["status"]


def run_status(home: Path, row: dict) -> str:
    """What a reader shows: live_status, or missing when the run's folder is gone."""
    return live_status(row) if run_paths(home, row["run_dir"]).root.is_dir() else RunStatus.MISSING


def _summary(home: Path, row: dict, stages: list[dict], metrics: list[dict], verdicts: list[dict], now: float) -> RunSummary:
    try:
        config = stored_config(row)
    except BrokenStateError:  # listed all the same; its detail says what is wrong
        config = {}
    current = next((s for s in stages if s["status"] == StageStatus.RUNNING), None) \
        or next((s for s in stages if s["status"] != StageStatus.DONE), None)
    status = run_status(home, row)
    elapsed = 0.0  # time in stages, over every attempt; a running stage counts up to now only while its engine lives
    for s in stages:
        elapsed += s.get("spent") or 0.0
        if s["started"] is not None:
            alive = s["status"] == StageStatus.RUNNING and status == RunStatus.RUNNING
            end = s["ended"] if s["ended"] is not None else (now if alive else s["started"])
            elapsed += max(end - s["started"], 0.0)
    pass1 = [m for m in metrics if m["metric"] == "pass@1" and m["checkpoint"] != "trial"]
    best_id = max((m["value"] for m in pass1 if m["domain"] == Domain.ID), default=None)
    ood: dict[str, list[float]] = {}
    for m in pass1:
        if m["domain"] == Domain.OOD:
            ood.setdefault(m["checkpoint"], []).append(m["value"])
    best_ood = max((sum(v) / len(v) for v in ood.values()), default=None)
    latest = max(verdicts, key=lambda v: (v["iteration"], checkpoint_order(v["checkpoint"])), default=None)
    sweep_pid = row.get("sweep_pid")
    return RunSummary(
        id=row["id"], name=row["name"], preset=row["preset"], method=Method(row["method"]),
        model=config.get("model", {}).get("path", ""), status=RunStatus(status),
        iteration=current["iteration"] if current else None, stage=current["stage"] if current else None,
        stages_done=sum(s["status"] == StageStatus.DONE for s in stages), stages_total=len(stages),
        best_id=best_id, best_ood=best_ood, verdict=latest["verdict"] if latest else None,
        started=row["created"], elapsed=elapsed, error=row["error"], pid=row["pid"],
        sweep_running=bool(sweep_pid) and pid_alive(sweep_pid), run_dir=run_paths(home, row["run_dir"]).root,
        remote_code=tuple(role for role in ("model", "teacher") if (config.get(role) or {}).get("trust_remote_code")),
    )


def _group(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["run_id"], []).append(r)
    return out


def list_runs(home=None) -> list[RunSummary]:
    """Every run of the home folder, newest first (a handful of queries, whatever the count)."""
    r = reader(home)
    stages, metrics, verdicts = _group(r.stages()), _group(r.metrics()), _group(r.verdicts())
    now = time.time()
    return [_summary(r.home, row, stages.get(row["id"], []), metrics.get(row["id"], []), verdicts.get(row["id"], []), now)
            for row in r.runs()]


def _stage_row(s: dict) -> StageRow:
    return StageRow(iteration=s["iteration"], stage=Stage(s["stage"]), status=StageStatus(s["status"]), started=s["started"],
                    ended=s["ended"], error=s["error"], artifact=s["artifact"] or None, spent=s.get("spent") or 0.0,
                    info=json.loads(s["info"]) if s["info"] else {})


def _adoptions(stages: list[dict]) -> dict[str, Adoption]:
    return {c: Adoption(a["iteration"], a["trial"], a["alpha"], a["drop_rate"], a["seed"])
            for c, a in adopted_checkpoints(stages).items()}


def run_detail(run: str, home=None) -> RunDetail:
    r = reader(home)
    row = find_run(r, run)
    stages = r.stages(row["id"])
    summary = _summary(r.home, row, stages, r.metrics(row["id"]), r.verdicts(row["id"]), time.time())
    return RunDetail(summary=summary, config=stored_config(row), stages=tuple(_stage_row(s) for s in stages),
                     log_path=run_paths(r.home, row["run_dir"]).log, adoptions=tuple(_adoptions(stages).values()))


def _result(m: dict, adopted: Adoption | None = None) -> ResultRow:
    return ResultRow(checkpoint=m["checkpoint"], iteration=m["iteration"], task=m["task"], domain=Domain(m["domain"]),
                     metric=m["metric"], value=m["value"], n=m["n"], adopted=adopted)


def results(run: str, home=None) -> list[ResultRow]:
    """Metric rows, ordered Base, SFT1, Merge1, ...; in-domain first; then task and metric. A row of
    an adopted sweep trial's checkpoint carries the adoption."""
    r = reader(home)
    run_id = find_run(r, run)["id"]
    adopted = _adoptions(r.stages(run_id))
    rows = [_result(m, adopted.get(m["checkpoint"])) for m in r.metrics(run_id)]
    return sorted(rows, key=lambda x: result_order(x.checkpoint, x.domain, x.task, x.metric))


def layer_stats(run: str, iteration: int | None = None, checkpoint: str | None = None, home=None) -> list[LayerStat]:
    r = reader(home)
    out = []
    for s in r.layer_stats(find_run(r, run)["id"]):
        if (iteration is not None and s["iteration"] != iteration) or (checkpoint is not None and s["checkpoint"] != checkpoint):
            continue
        modules = {name: ModuleStat(m.get("importance"), m.get("weight_change"))
                   for name, m in (json.loads(s["modules"]) if s["modules"] else {}).items()}
        out.append(LayerStat(iteration=s["iteration"], checkpoint=s["checkpoint"], layer=s["layer"],
                             importance=s["importance"], importance_pct=s["importance_pct"],
                             weight_change=s["weight_change"], weight_change_pct=s["weight_change_pct"], modules=modules))
    return out


def verdicts(run: str, home=None) -> list[Verdict]:
    r = reader(home)

    def ints(text):
        return tuple(json.loads(text) or ()) if text else ()

    return [Verdict(iteration=v["iteration"], checkpoint=v["checkpoint"], spearman=v["spearman"], verdict=v["verdict"],
                    threshold=v["threshold"], top_importance=ints(v["top_importance"]), top_change=ints(v["top_change"]),
                    top_overlap=ints(v["top_overlap"]))
            for v in r.verdicts(find_run(r, run)["id"])]


def trials(run: str, iteration: int | None = None, home=None) -> list[Trial]:
    r = reader(home)
    out = []
    for t in r.trials(find_run(r, run)["id"], iteration):
        rows = tuple(_result({"checkpoint": "trial", "iteration": t["iteration"], **x})
                     for x in (json.loads(t["results"]) if t["results"] else []))
        out.append(Trial(id=t["id"], iteration=t["iteration"], alpha=t["alpha"], drop_rate=t["drop_rate"], seed=t["seed"],
                         subset=t["subset"] or 0, status=TrialStatus(t.get("status") or TrialStatus.DONE), results=rows, seconds=t["seconds"],
                         adopted=bool(t["adopted"]), weights=t["weights"] if t["weights"] != "keep" else None,
                         error=t.get("error"), created=t["created"]))
    return out


def progress(run: str, home=None) -> Progress | None:
    """Progress of the run's running stage; None when no stage is running (or it has reported nothing)."""
    r = reader(home)
    row = find_run(r, run)
    running = {(s["iteration"], s["stage"]) for s in r.stages(row["id"]) if s["status"] == StageStatus.RUNNING}
    rows = [p for p in r.progress(row["id"]) if (p["iteration"], p["stage"]) in running]
    if not rows:
        return None
    p = rows[-1]
    return Progress(iteration=p["iteration"], stage=p["stage"], step=p["step"] or 0, total=p["total"] or 0,
                    unit=p["unit"] or "", rate=p["rate"], tokens_per_s=p["tokens_per_s"], loss=p["loss"],
                    started=p["started"], updated=p["updated"], label=p.get("label"))


def sft_steps(run: str, home=None, after: int = 0) -> list[StepPoint]:
    """Every stored SFT optimizer step of the run (iteration, then step), or those stored after
    `after` (the last StepPoint.seq a caller has): a live chart reads only what is new."""
    r = reader(home)
    return [StepPoint(iteration=s["iteration"], step=s["step"], loss=s["loss"], lr=s["lr"], grad_norm=s["grad_norm"],
                      tokens=s["tokens"], tokens_per_s=s["tokens_per_s"], ts=s["ts"], seq=s["seq"])
            for s in r.sft_steps(find_run(r, run)["id"], after)]


def system_history(run: str, home=None) -> list[SystemPoint]:
    """The machine's load sampled by the engine during the run's stages, oldest first."""
    r = reader(home)
    out = []
    for s in r.system_samples(find_run(r, run)["id"]):
        try:
            gpus = tuple(GpuReading(g["index"], str(g.get("name", "")), float(g["util"]), int(g["mem_used"]), int(g["mem_total"]))
                         for g in json.loads(s["gpus"] or "[]"))
        except (ValueError, TypeError, KeyError):
            gpus = ()  # a damaged row still shows its CPU and memory
        out.append(SystemPoint(iteration=s["iteration"], stage=s["stage"], ts=s["ts"], cpu_pct=s["cpu_pct"] or 0.0,
                               mem_used=s["mem_used"] or 0, mem_total=s["mem_total"] or 0, gpus=gpus))
    return out


def log_path(run: str, home=None) -> Path:
    r = reader(home)
    return run_paths(r.home, find_run(r, run)["run_dir"]).log


def read_log(path: Path, offset: int | None = None, max_bytes: int = 4 * 1024 * 1024) -> tuple[list[str], int]:
    """Complete lines appended to `path` since byte `offset`, and the offset to pass next time.
    offset None starts near the end (the last TAIL_START_BYTES, from a line start). A file
    shorter than the offset, or without a newline just before it, was truncated or replaced
    (rotated): reading starts again at 0.
    A partial last line is left for the next call. Undecodable bytes are replaced."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            skip_partial = False
            if offset is None:
                offset = max(size - TAIL_START_BYTES, 0)
                skip_partial = offset > 0
            elif size < offset:
                offset = 0
            elif offset > 0:
                # Offsets handed out always follow a newline: another byte there means the file
                # was replaced (rotated, rewritten) since; read the new one from its start.
                f.seek(offset - 1)
                if f.read(1) != b"\n":
                    offset = 0
            f.seek(offset)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return [], offset or 0
    if skip_partial:
        cut = data.find(b"\n") + 1
        data, offset = data[cut:], offset + cut
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode("utf-8", errors="replace").splitlines()
    return lines, offset + end


def tail_log(run: str, offset: int | None = None, home=None) -> tuple[list[str], int]:
    """The run's engine.log lines appended since `offset` (see read_log)."""
    return read_log(log_path(run, home), offset)


def _jsonl(path: Path) -> list[dict]:
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash: the rest still shows
    except FileNotFoundError:
        pass
    return out


def sample_sets(run: str, iteration: int, home=None) -> list[str]:
    """What samples of iteration t are on disk: generated, kept, eval:CHECKPOINT."""
    r = reader(home)
    paths = run_paths(r.home, find_run(r, run)["run_dir"])
    found = [s for s, p in (("generated", paths.graded(iteration)), ("kept", paths.kept(iteration))) if p.exists()]
    evals = sorted((p.stem.removeprefix("eval_") for p in paths.iteration(iteration).glob("eval_*.jsonl")),
                   key=lambda name: (checkpoint_order(name), name))  # base, sft1, merge1 (the stage's order)
    return found + [f"eval:{name}" for name in evals]


def samples(run: str, iteration: int, which: str = "generated", home=None, limit: int | None = None) -> list[Sample]:
    """Samples of iteration t: `generated` (every sample, graded, with kept or not), `kept` (what SFT
    trains on) or `eval:CHECKPOINT` (e.g. eval:sft1; iteration 0 holds eval:base)."""
    r = reader(home)
    row = find_run(r, run)
    paths = run_paths(r.home, row["run_dir"])
    task_id = stored_config(row)["tasks"]["id"]
    if which == "generated":
        path = paths.graded(iteration)
    elif which == "kept":
        path = paths.kept(iteration)
    elif which.startswith("eval:"):
        path = paths.eval_samples(iteration, which.removeprefix("eval:"))
    else:
        raise RunStateError(f"samples: got {which!r}; allowed: generated, kept, eval:CHECKPOINT")
    records = _jsonl(path)[:limit] if limit else _jsonl(path)
    out = []
    for x in records:
        kept = True if which == "kept" else x.get("kept")
        correct = True if which == "kept" else x.get("correct")
        out.append(Sample(id=str(x.get("id", "")), question=str(x.get("question", "")),
                          completion=str(x.get("completion", x.get("response", ""))), gold=str(x.get("gold", "")),
                          extracted=None if x.get("extracted") is None else str(x["extracted"]), correct=correct,
                          kept=kept, temperature=x.get("temperature"), task=str(x.get("task", task_id))))
    return out
