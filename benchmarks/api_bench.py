"""engine.api read path: import time of `engine.api` (what the app and `imm ls` pay at start-up)
and the latency of list_runs / run_detail / results on a home with 200 runs, while nothing heavy
(torch, numpy, sqlite-utils) is imported. Prints a table, writes benchmarks/out/api_bench.json and its
RESULTS.md section.

    .venv/bin/python benchmarks/api_bench.py [--runs 200] [--repeat 7]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_md import write_section  # noqa: E402


def make_home(home: Path, n: int) -> None:
    """n finished runs (2 iterations: 9 stages, 15 metric rows, 16 layer rows each) via the writer."""
    from engine.config import resolve
    from engine.runstate.plan import create_run
    from engine.runstate.store import Store

    store = Store(home)
    cfg = resolve(ROOT / "presets" / "tiny-arith.toml")
    for i in range(n):
        run_id, _ = create_run(store, cfg, "presets/tiny-arith.toml")
        for s in store.stages(run_id):
            store.set_stage(run_id, s["iteration"], s["stage"], status="running", started=1000.0 + i)
            rows = {}
            if s["stage"] == "eval":
                ckpts = ["base"] if s["iteration"] == 0 else [f"sft{s['iteration']}", f"merge{s['iteration']}"]
                rows["metrics"] = [{"checkpoint": c, "iteration": s["iteration"], "task": t, "domain": d,
                                    "metric": "pass@1", "value": 40.0 + i % 7, "n": 300}
                                   for c in ckpts for t, d in (("arith_add3", "id"), ("arith_add4", "ood"), ("arith_mix3", "ood"))]
            store.finish_stage(run_id, s["iteration"], s["stage"], info={"x": 1}, rows=rows)
        store.update_run(run_id, status="done")


def import_seconds(repeat: int) -> list[float]:
    code = "import time; t = time.perf_counter(); import engine.api; print(time.perf_counter() - t)"
    return [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                                 check=True).stdout) for _ in range(repeat)]


def read_seconds(home: Path, repeat: int) -> dict[str, list[float]]:
    code = f"""
import json, sys, time
from engine import api
h = {str(home)!r}
out = {{"list_runs": [], "run_detail": [], "results": []}}
run_id = api.list_runs(h)[0].id
for _ in range({repeat}):
    for name, call in (("list_runs", lambda: api.list_runs(h)), ("run_detail", lambda: api.run_detail(run_id, h)),
                       ("results", lambda: api.results(run_id, h))):
        t = time.perf_counter(); call(); out[name].append(time.perf_counter() - t)
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "numpy", "transformers", "safetensors", "sqlite_utils", "pandas"}})
print(json.dumps({{**out, "heavy": heavy}}))
"""
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                                     check=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    imports = import_seconds(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        make_home(Path(tmp), args.runs)
        reads = read_seconds(Path(tmp), args.repeat)
    heavy = reads.pop("heavy")
    med = {"import engine.api": statistics.median(imports), **{k: statistics.median(v) for k, v in reads.items()}}
    rows = [(name, f"{1000 * s:.1f}") for name, s in med.items()]
    print(f"{'what':<22} {'median ms':>10}")
    for name, ms in rows:
        print(f"{name:<22} {ms:>10}")
    print(f"heavy modules imported by the reads: {heavy or 'none'}")
    result = {"runs": args.runs, "repeat": args.repeat, "median_seconds": med, "all_seconds": {"import": imports, **reads},
              "heavy_modules": heavy}
    (ROOT / "benchmarks" / "out").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "out" / "api_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = "\n".join(f"| {name} | {ms} |" for name, ms in rows)
    write_section(f"""## Engine API read path

`benchmarks/api_bench.py` on the 2-core CPU machine ({time.strftime('%Y-%m-%d')}), a home of {args.runs} finished runs,
median of {args.repeat} (imports: fresh interpreters). Target: `import engine.api` under 0.3 s; the reads import
no torch, numpy, transformers, safetensors or sqlite-utils ({'none imported' if not heavy else 'imported: ' + ', '.join(heavy)}).

| what | median ms |
|---|---|
{table}
""")


if __name__ == "__main__":
    main()
