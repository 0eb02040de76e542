"""Diagnostics benchmark (issue 3), CPU.

(a) The importance pass vs a plain forward+backward (HF loss) over the same batches of a ~3.4M
    parameter Llama; target: at most 1.3x. Repeats alternate the two so machine load hits both.
(b) Peak RSS of the weight change between two ~450 MB checkpoints in ~200 MB shards, measured in
    a fresh subprocess (ru_maxrss), against 3x the largest shard; the interpreter + torch import
    baseline is reported and subtracted. Target: under 3x the largest shard.

(c) With --gpu B1,B2: the importance pass on a GPU, Qwen2.5-1.5B shape, 256 examples of ~256 tokens:
    seconds and peak GPU memory at each analyze.batch_size (nothing of (a) or (b)).

Usage: .venv/bin/python benchmarks/diagnostics_bench.py [--repeats 15] [--threads 1] [--gpu 8,16]
Writes benchmarks/out/diagnostics_bench.json (with --gpu: diagnostics_gpu_bench.json).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.diagnostics.data import load_pairs  # noqa: E402
from engine.diagnostics.importance import importance_of_model  # noqa: E402
from engine.train.textdata import batches, encode_pairs  # noqa: E402
from engine.models.tiny import new_tiny_model  # noqa: E402

OUT = ROOT / "benchmarks" / "out"

# VmHWM (peak RSS of this process image) resets at exec, unlike ru_maxrss, which a child inherits
# from the parent that forked it.
RSS_CHILD = """
import json, re, sys, time
import torch
from engine.diagnostics.weight_change import weight_change
def hwm_kb():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
baseline = hwm_kb()
start = time.perf_counter()
weight_change(sys.argv[1], sys.argv[2])
print(json.dumps({"baseline_kb": baseline, "peak_kb": hwm_kb(), "seconds": time.perf_counter() - start}))
"""

def plain_forward_backward(model, items, batch_size, pad_id):
    model.zero_grad(set_to_none=True)
    for ids, mask, labels in batches(items, batch_size, pad_id):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    model.zero_grad(set_to_none=True)


def bench_importance(repeats: int) -> dict:
    model, tokenizer = new_tiny_model(None, seed=0, layers=4, hidden=256, heads=8)
    model.eval()
    items = encode_pairs(tokenizer, load_pairs("arith_add3", 64), 256)
    batch_size, pad_id = 16, tokenizer.pad_token_id
    plain_forward_backward(model, items, batch_size, pad_id)  # warm-up
    wall = {"plain": [], "importance": []}
    cpu = {"plain": [], "importance": []}
    for repeat in range(repeats):
        for kind in ("plain", "importance")[:: 1 if repeat % 2 else -1]:  # alternate who runs first
            start, start_cpu = time.perf_counter(), time.process_time()
            if kind == "plain":
                plain_forward_backward(model, items, batch_size, pad_id)
            else:
                importance_of_model(model, items, batch_size, pad_id)
            wall[kind].append(time.perf_counter() - start)
            cpu[kind].append(time.process_time() - start_cpu)
    med = {f"{clock}_{kind}": statistics.median(series[kind])
           for clock, series in (("wall", wall), ("cpu", cpu)) for kind in series}
    ratio, cpu_ratio = med["wall_importance"] / med["wall_plain"], med["cpu_importance"] / med["cpu_plain"]
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "examples": len(items), "batch_size": batch_size, "repeats": repeats, "threads": torch.get_num_threads(),
        **med,
        "ratio": ratio, "cpu_ratio": cpu_ratio, "wall_s": wall, "cpu_s": cpu, "target": 1.3, "met": ratio <= 1.3,
    }


def make_checkpoints(folder: Path) -> tuple[Path, Path]:
    before, after = folder / "before", folder / "after"
    if (after / "model.safetensors.index.json").exists():
        return before, after
    model, _ = new_tiny_model(None, seed=0, layers=4, hidden=1536, heads=12)
    model.save_pretrained(before, max_shard_size="200MB")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=1e-3)
    model.save_pretrained(after, max_shard_size="200MB")
    return before, after


def bench_weight_change_rss() -> dict:
    before, after = make_checkpoints(OUT / "diag_ckpt")
    shards = sorted(before.glob("*.safetensors"))
    largest = max(f.stat().st_size for f in shards)
    proc = subprocess.run([sys.executable, "-c", RSS_CHILD, str(before), str(after)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    mb = 1 << 20
    peak, baseline = child["peak_kb"] * 1024 / mb, child["baseline_kb"] * 1024 / mb
    largest_mb = largest / mb
    return {
        "checkpoint_mb": sum(f.stat().st_size for f in shards) / mb, "shards": len(shards),
        "largest_shard_mb": largest_mb, "seconds": child["seconds"],
        "peak_rss_mb": peak, "import_baseline_mb": baseline, "peak_above_baseline_mb": peak - baseline,
        "ratio_raw": peak / largest_mb, "ratio_above_baseline": (peak - baseline) / largest_mb,
        "target": 3.0, "met_above_baseline": (peak - baseline) / largest_mb < 3.0, "met_raw": peak / largest_mb < 3.0,
    }


def bench_importance_gpu(batch_sizes: list[int]) -> list[dict]:
    """(c) The importance pass as the analyze stage runs it on a GPU (fp32 weights, full logits):
    a random-weight Qwen2.5-1.5B-shaped model, 256 examples of about 256 tokens (64 of prompt),
    seconds (after one warm-up batch) and peak GPU memory per analyze.batch_size."""
    import random

    from sft_bench import qwen_config  # benchmarks/ is on sys.path when run as a script
    from transformers import AutoModelForCausalLM

    from engine.train.textdata import IGNORE, Encoded

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(qwen_config("1.5b"), dtype=torch.float32)
    rng = random.Random(0)
    items = []
    for _ in range(256):
        ids = [rng.randrange(1000, 150000) for _ in range(rng.randint(224, 288))]
        items.append(Encoded(ids, [IGNORE] * 64 + ids[64:]))
    rows = []
    for batch_size in batch_sizes:
        importance_of_model(model, items[:batch_size], batch_size, 0)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        importance_of_model(model, items, batch_size, 0)
        torch.cuda.synchronize()
        rows.append({"shape": "1.5b", "examples": len(items), "batch_size": batch_size,
                     "seconds": round(time.perf_counter() - start, 2),
                     "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1), "card": torch.cuda.get_device_name()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", default="", help="only (c), on a GPU, at these analyze.batch_size values, e.g. 8,16")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for (a); with 2 on a busy 2-core machine, OpenMP spin-waits "
                             "make single runs vary by 10x (measured 1.5 to 17 s for the same work)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.gpu:
        rows = bench_importance_gpu([int(b) for b in args.gpu.split(",")])
        (OUT / "diagnostics_gpu_bench.json").write_text(json.dumps(rows, indent=2))
        return
    torch.set_num_threads(args.threads)
    imp = bench_importance(args.repeats)
    rss = bench_weight_change_rss()
    print(f"(a) importance pass vs plain forward+backward: {imp['params'] / 1e6:.2f}M params, "
          f"{imp['examples']} examples, batch {imp['batch_size']}, {imp['threads']} thread(s), "
          f"median of {imp['repeats']}")
    print(f"    wall: plain {imp['wall_plain']:.3f} s   importance {imp['wall_importance']:.3f} s   "
          f"ratio {imp['ratio']:.3f} (target <= 1.3: {'met' if imp['met'] else 'MISSED'})")
    print(f"    cpu:  plain {imp['cpu_plain']:.3f} s   importance {imp['cpu_importance']:.3f} s   "
          f"ratio {imp['cpu_ratio']:.3f}")
    print(f"(b) weight change RSS: 2 x {rss['checkpoint_mb']:.0f} MB in {rss['shards']} shards, "
          f"largest {rss['largest_shard_mb']:.0f} MB, {rss['seconds']:.1f} s")
    print(f"    peak RSS {rss['peak_rss_mb']:.0f} MB = import baseline {rss['import_baseline_mb']:.0f} MB "
          f"+ {rss['peak_above_baseline_mb']:.0f} MB")
    print(f"    above baseline {rss['ratio_above_baseline']:.2f}x largest shard "
          f"({'met' if rss['met_above_baseline'] else 'MISSED'}); raw {rss['ratio_raw']:.2f}x "
          f"({'met' if rss['met_raw'] else 'MISSED'}) (target < 3x)")
    (OUT / "diagnostics_bench.json").write_text(json.dumps({"importance": imp, "weight_change_rss": rss}, indent=2))


if __name__ == "__main__":
    main()
