"""imm show RUN [--format table|json|csv|md] [--metric pass@K] [--home DIR]"""
from __future__ import annotations

from . import add_run_arguments


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="a run's results (and, as JSON, its config and stages)", description=__doc__)
    add_run_arguments(p)
    p.add_argument("--format", choices=("table", "json", "csv", "md"), default="table")
    p.add_argument("--metric", default="pass@1", help="the metric of the table formats (default pass@1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine import api

    from .ls import where

    detail = api.run_detail(args.run_id, home=args.home)
    s = detail.summary
    if args.format == "table":
        print(f"run {s.id}  status {s.status}  method {s.method}  stages {s.stages_done}/{s.stages_total}  next {where(s)}")
        seeds = [f"iter {st.iteration} {st.info['seed']}" for st in detail.stages if st.stage == "merge" and "seed" in st.info]
        if seeds:
            print("DARE mask seeds used: " + ", ".join(seeds))
        for a in detail.adoptions:
            print(f"{api.checkpoint_label(a.checkpoint)} is {a.text}; the config's merge.alpha / merge.drop_rate "
                  "do not apply to it")
        peaks = [f"{st.iteration}:{st.stage} {st.peak_gpu_gib:g}" for st in detail.stages if st.peak_gpu_gib is not None]
        if peaks:  # none on a CPU run
            print("peak GPU memory (GiB): " + ", ".join(peaks))
        if s.remote_code:
            print(f"trust_remote_code is on for: {', '.join(s.remote_code)} (the checkpoint's own Python code runs)")
    print(api.export(s.id, args.format, home=args.home, metric=args.metric))
    return 0
