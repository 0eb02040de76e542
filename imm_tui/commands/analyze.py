"""`imm analyze`: layer importance vs weight change between two checkpoints, and the verdict."""
from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="layer importance (on --before) vs weight change (--before -> --after), and the verdict",
        description=__doc__,
    )
    p.add_argument("--before", required=True, metavar="DIR", help="checkpoint folder before the update")
    p.add_argument("--after", required=True, metavar="DIR", help="checkpoint folder after the update")
    p.add_argument("--data", metavar="TASK_OR_JSONL",
                   help="reasoning set for importance: a task, task:split, or a JSONL file with "
                        "prompt/response (or question/answer) fields; without it, weight change only")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--limit", type=int, default=256, help="examples of --data to use (default 256)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512, help="tokens per example (default 512)")
    p.add_argument("--device", help="torch device for importance (default: cuda when available)")
    p.set_defaults(func=run)


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(report: dict) -> str:
    top_i = set(report["top_quarter"]["importance"] or ())
    top_c = set(report["top_quarter"]["weight_change"] or ())
    lines = [f"{'layer':>5}  {'importance':>11} {'imp %':>6}  {'weight change':>13} {'chg %':>6}  top quarter"]
    for row in report["layers"]:
        n = row["layer"]
        marks = " ".join(m for m, on in (("importance", n in top_i), ("change", n in top_c)) if on)
        lines.append(
            f"{n:>5}  {fmt(row['importance'], '11.4g')} {fmt(row['importance_pct'], '6.1f')}  "
            f"{fmt(row['weight_change'], '13.4g')} {fmt(row['weight_change_pct'], '6.1f')}  {marks}"
        )
    r = report["spearman"]
    lines.append("")
    lines.append(f"spearman(importance, weight change) = {fmt(r, '+.3f')}  ->  {report['verdict']}"
                 + (f" (superficial below {report['threshold']})" if r is not None else ""))
    unassigned = report["unassigned"]
    for category, names in unassigned["names"].items():
        imp = (unassigned["importance"] or {}).get(category)
        chg = unassigned["weight_change"].get(category)
        lines.append(f"not in a layer: {category} ({len(names)} tensors): importance {fmt(imp, '.4g')}, "
                     f"weight change {fmt(chg, '.4g')}")
    for key in ("only_in_before", "only_in_after"):
        if report[key]:
            lines.append(f"{key.replace('_', ' ')}: {', '.join(report[key])}")
    if report["tied"]:
        lines.append("tied: " + ", ".join(f"{a} = {b}" for a, b in report["tied"].items()))
    return "\n".join(lines)


def run(args) -> int:
    from engine import api

    report = api.analyze_checkpoints(args.before, args.after, args.data, limit=args.limit, batch_size=args.batch_size,
                                     max_length=args.max_length, device=args.device)
    print(json.dumps(report, indent=2) if args.format == "json" else table(report))
    return 0
