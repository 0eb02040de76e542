"""A run's results as a table (rows Base, SFT1, Merge1, ...; columns tasks) in several formats."""
from __future__ import annotations

import csv
import io
import json

from .domain import Checkpoint, Domain


def checkpoint_label(name: str) -> str:
    """Base, SFT1, Merge1 (any other name, e.g. a sweep's "trial", capitalised)."""
    try:
        return Checkpoint.parse(name).title
    except ValueError:
        return name.capitalize()


def checkpoint_order(name: str) -> tuple[int, int]:
    """Base, SFT1, Merge1, SFT2, ... (any other name first)."""
    try:
        return Checkpoint.parse(name).sort_key
    except ValueError:
        return 0, -1


def result_order(checkpoint: str, domain: str, task: str, metric: str) -> tuple:
    """The order of result rows everywhere: by checkpoint (Base, SFT1, Merge1, ...), in-domain
    first, then task and metric."""
    return checkpoint_order(checkpoint), domain != Domain.ID, task, metric


def adoptions(stages: list[dict]) -> dict[str, dict]:
    """The checkpoints that are adopted sweep trials (a merge stage whose info has adopted_trial):
    mergeT -> {iteration, trial, alpha, drop_rate, seed}."""
    out = {}
    for s in stages:
        info = json.loads(s["info"]) if isinstance(s.get("info"), str) and s["info"] else (s.get("info") or {})
        if s["stage"] == "merge" and isinstance(info, dict) and info.get("adopted_trial") is not None:
            out[str(Checkpoint.merge(s["iteration"]))] = {"iteration": s["iteration"], "trial": info["adopted_trial"],
                                             "alpha": info.get("alpha"), "drop_rate": info.get("drop_rate"),
                                             "seed": info.get("seed")}
    return out


def adoption_text(adopted: dict) -> str:
    """adopted trial 7 (alpha 0.2, p 0.3): the mark of a checkpoint that came from a trial."""
    return f"adopted trial {adopted['trial']} (alpha {adopted['alpha']:g}, p {adopted['drop_rate']:g})"


def results(metric_rows: list[dict]) -> list[dict]:
    """The `results` list of `imm show --format json`."""
    return [
        {k: r[k] for k in ("checkpoint", "iteration", "task", "domain", "metric", "value", "n")}
        for r in sorted(metric_rows, key=lambda r: result_order(r["checkpoint"], r["domain"], r["task"], r["metric"]))
    ]


def table(metric_rows: list[dict], metric: str = "pass@1", adopted: dict[str, dict] | None = None
          ) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per checkpoint, one column per task (in-domain first), values in %;
    where a checkpoint is an adopted sweep trial (`adopted`, see adoptions), a last column says so."""
    rows = [r for r in results(metric_rows) if r["metric"] == metric]
    tasks = list(dict.fromkeys(f"{r['task']} ({r['domain']})" for r in sorted(rows, key=lambda r: r["domain"] != Domain.ID)))
    by_ckpt: dict[str, dict[str, float]] = {}
    for r in rows:
        by_ckpt.setdefault(r["checkpoint"], {})[f"{r['task']} ({r['domain']})"] = r["value"]
    header = ["checkpoint"] + [f"{t} {metric} %" for t in tasks]
    body = [
        [checkpoint_label(c)] + [f"{vals[t]:.1f}" if t in vals else "" for t in tasks]
        for c, vals in sorted(by_ckpt.items(), key=lambda kv: checkpoint_order(kv[0]))
    ]
    if adopted:
        header.append("merge")
        for row, c in zip(body, sorted(by_ckpt, key=checkpoint_order)):
            row.append(adoption_text(adopted[c]) if c in adopted else "")
    return header, body


def render_text(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]

    def line(cells) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in body])


def render_markdown(header: list[str], body: list[list[str]]) -> str:
    rows = [header, ["---"] * len(header)] + body
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def render_csv(header: list[str], body: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header] + body)
    return buf.getvalue().rstrip("\n")


STEP_COLUMNS = ("iteration", "step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "ts")


def render(fmt: str, run: dict, stages: list[dict], metric_rows: list[dict], metric: str = "pass@1",
           step_rows: list[dict] | tuple[()] = ()) -> str:
    """The results in a format; JSON also holds the config, the stages, the adopted trials and
    every SFT step."""
    adopted = adoptions(stages)
    if fmt == "json":
        return json.dumps(
            {
                "id": run["id"], "name": run["name"], "status": run["status"], "method": run["method"],
                "config": json.loads(run["config"]), "error": run["error"],
                "stages": [
                    {k: s[k] for k in ("iteration", "stage", "status", "started", "ended", "error", "artifact")}
                    | {"info": json.loads(s["info"]) if s["info"] else {}}
                    for s in stages
                ],
                "results": results(metric_rows),
                # Checkpoints that are adopted sweep trials, with the trial's alpha and p (the config's
                # merge.alpha / merge.drop_rate are the run's settings, not theirs).
                "adopted": [{"checkpoint": c, **a} for c, a in adopted.items()],
                "sft_steps": [{k: r[k] for k in STEP_COLUMNS} for r in step_rows],
            },
            indent=2,
        )
    header, body = table(metric_rows, metric, adopted)
    return {"table": render_text, "md": render_markdown, "csv": render_csv}[fmt](header, body)


def trial_table(trials, metric: str = "pass@1") -> tuple[list[str], list[list[str]]]:
    """Sweep trials (api.Trial) as rows (alpha, p) by task columns (in-domain first); queued,
    running and failed trials show their status instead of values."""
    columns = sorted({(r.domain != Domain.ID, r.task) for tr in trials for r in tr.results if r.metric == metric})
    tasks = [f"{task} ({'ood' if ood else 'id'})" for ood, task in columns]
    body = []
    for tr in trials:
        vals = {f"{r.task} ({r.domain})": f"{r.value:.1f}" for r in tr.results if r.metric == metric}
        cells = [vals.get(t, "") for t in tasks] if tr.status == "done" else [tr.status] + [""] * (len(tasks) - 1)
        body.append([str(tr.id), f"{tr.alpha:g}", f"{tr.drop_rate:g}", *cells,
                     f"{tr.seconds:.1f}" if tr.seconds is not None else "", "*" if tr.adopted else ""])
    return ["trial", "alpha", "p", *(f"{t} {metric} %" for t in tasks), "seconds", "adopted"], body
