"""Step 6 (diagnostics): per-layer importance of the model before SFT against the weight change
to SFT_t (and Merge_t), with the Spearman verdict (deep or superficial self-improvement)."""
from __future__ import annotations

import json

from .context import StageContext, StageResult
from ..domain import Checkpoint, Method


def layer_importance(ctx: StageContext, t: int):
    """Layer importance of the model SFT_t starts from, computed once and kept as JSON
    (IIMM's merge and the analyze stage both use it). Progress: examples."""
    from ..diagnostics import Importance, importance, load_pairs, task_pairs
    from ..durable import write_atomic

    path = ctx.paths.importance(t)
    if path.exists():
        return Importance.from_dict(json.loads(path.read_text()))
    a = ctx.cfg.analyze
    if a.data:
        pairs = load_pairs(a.data, a.limit)
    else:  # the in-domain task's train split (a [tasks.NAME] custom task too)
        task = ctx.in_domain_task()
        pairs = task_pairs(task, task.train_split)[: a.limit]
    device = ctx.device_and_dtype()[0]
    imp = importance(ctx.sft_init_path(t), pairs, batch_size=a.batch_size, max_length=ctx.cfg.sft.max_length, device=device,
                     progress=ctx.progress, trust_remote_code=ctx.cfg.model.trust_remote_code)
    ctx.paths.iteration(t).mkdir(exist_ok=True)
    write_atomic(path, json.dumps(imp.to_dict()))
    return imp


def analyze(ctx: StageContext, t: int) -> StageResult:
    """diagnostics.json and layer_stats / verdicts rows, per checkpoint. Progress: examples
    (importance), then tensors (weight change) per checkpoint."""
    from ..diagnostics import build_report, weight_change
    from ..durable import write_atomic

    imp = layer_importance(ctx, t)
    targets = {str(Checkpoint.sft(t)): ctx.paths.sft(t)}
    if ctx.cfg.method == Method.IMM:
        targets[str(Checkpoint.merge(t))] = ctx.paths.merged(t)
    reports = {name: build_report(weight_change(ctx.sft_init_path(t), folder, ctx.progress), imp) for name, folder in targets.items()}
    write_atomic(ctx.paths.diagnostics(t), json.dumps(reports, indent=1))
    layer_rows, verdict_rows = [], []
    for name, rep in reports.items():
        layer_rows += [{"iteration": t, "checkpoint": name, **{k: v for k, v in row.items() if k != "modules"},
                        "modules": json.dumps(row["modules"])} for row in rep["layers"]]
        top = rep["top_quarter"]
        verdict_rows.append({"iteration": t, "checkpoint": name, "spearman": rep["spearman"], "verdict": rep["verdict"],
                             "threshold": rep["threshold"], "top_importance": json.dumps(top["importance"]),
                             "top_change": json.dumps(top["weight_change"]), "top_overlap": json.dumps(top["overlap"])})
        ctx.log(f"[iter {t}] analyze {name}: spearman(importance, weight change) = "
                f"{rep['spearman'] if rep['spearman'] is None else round(rep['spearman'], 3)} -> {rep['verdict']}; "
                f"top-quarter layers by importance {top['importance']}, by change {top['weight_change']}")
    info = {name: {"spearman": rep["spearman"], "verdict": rep["verdict"]} for name, rep in reports.items()}
    return StageResult(ctx.paths.diagnostics(t), info, {"layer_stats": layer_rows, "verdicts": verdict_rows})
