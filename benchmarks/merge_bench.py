"""One IMM merge step, ours vs mergekit 0.1.5 `dare_linear`, on Qwen2.5-0.5B-shaped checkpoints.

    .venv/bin/python benchmarks/merge_bench.py [--runs 3] [--mergekit PATH/TO/mergekit-yaml]
    python benchmarks/merge_bench.py --device cuda      # the GPU figures (see below)

CPU mode makes three bf16 checkpoints with random weights (494M parameters, 2 shards each, a real
Qwen2Config; tensors written directly, no model built) under benchmarks/out/, then runs each tool
as its own subprocess, alternating, `--runs` times, measuring wall time and peak RSS (the child's
ru_maxrss), and reports medians. Results go to benchmarks/out/merge_bench.json and to the "Merge"
section of benchmarks/RESULTS.md.

The same IMM step in mergekit's terms, theta = alpha*base + (1-alpha)*(prev + DARE_p(sft - prev)):
dare_linear computes base_model + sum_m weight_m * DARE_{density_m}(model_m - base_model). With
prev as base_model, base with weight alpha and density 1 (task vector base - prev, not dropped),
and sft with weight (1-alpha)/(1-p), density 1-p and rescale off (mergekit's rescale matches the L1
norm; folding 1/(1-p) into the weight gives the exact DARE rescale):
    prev + alpha*(base - prev) + (1-alpha)/(1-p) * mask*(sft - prev)
  = alpha*base + (1-alpha)*(prev + DARE_p(sft - prev)).
mergekit must live in its own venv (it pins its own dependencies); the script makes one under
benchmarks/out/mergekit-venv unless --mergekit names an existing mergekit-yaml.

CUDA mode measures, on tensors already in GPU memory: the card's bandwidth (a 1 GiB
device-to-device copy, bytes read + written per second), and our fused merge kernel's bytes read +
written per second over the same Qwen-shaped tensors (see cuda_bench), and prints the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from results_md import write_section  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
ALPHA, DROP, SEED = 0.5, 0.3, 1234
MERGEKIT_VERSION = "0.1.5"
MERGEKIT_DTYPES = ("float32", "bfloat16")


def qwen_config():
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, dtype="bfloat16",
        architectures=["Qwen2ForCausalLM"], bos_token_id=151643, eos_token_id=151643,
    )


def qwen_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of Qwen2ForCausalLM with tied embeddings (no lm_head.weight)."""
    h, i, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    shapes = {"model.embed_tokens.weight": (cfg.vocab_size, h), "model.norm.weight": (h,)}
    for n in range(cfg.num_hidden_layers):
        pre = f"model.layers.{n}."
        shapes.update({
            pre + "input_layernorm.weight": (h,), pre + "post_attention_layernorm.weight": (h,),
            pre + "self_attn.q_proj.weight": (h, h), pre + "self_attn.q_proj.bias": (h,),
            pre + "self_attn.k_proj.weight": (kv, h), pre + "self_attn.k_proj.bias": (kv,),
            pre + "self_attn.v_proj.weight": (kv, h), pre + "self_attn.v_proj.bias": (kv,),
            pre + "self_attn.o_proj.weight": (h, h),
            pre + "mlp.gate_proj.weight": (i, h), pre + "mlp.up_proj.weight": (i, h), pre + "mlp.down_proj.weight": (h, i),
        })
    return shapes


def parameter_count() -> int:
    import math

    return sum(math.prod(s) for s in qwen_shapes(qwen_config()).values())


def make_checkpoints(folder: Path) -> dict[str, Path]:
    """base, prev (= base + noise) and sft (= prev + noise): bf16, 2 shards each. Reused if present."""
    import torch
    from safetensors.torch import save_file

    cfg = qwen_config()
    shapes = qwen_shapes(cfg)
    names = sorted(shapes)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    paths = {role: folder / role for role in ("base", "prev", "sft")}
    if all((p / "model.safetensors.index.json").exists() for p in paths.values()):
        return paths
    gen = torch.Generator().manual_seed(0)
    previous = None
    for role, path in paths.items():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        weights = {}
        for name in names:
            noise = torch.randn(shapes[name], generator=gen).mul_(0.02 if previous is None else 0.002)
            weights[name] = (noise if previous is None else previous[name].float().add_(noise)).bfloat16()
        for fname, part in shards.items():
            save_file({n: weights[n] for n in part}, path / fname, metadata={"format": "pt"})
        index = {"metadata": {"total_size": sum(t.numel() * 2 for t in weights.values())},
                 "weight_map": {n: f for f, part in shards.items() for n in part}}
        (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        cfg.save_pretrained(path)
        previous = weights
    return paths


def mergekit_config(paths: dict[str, Path], dtype: str) -> str:
    return json.dumps({  # YAML is a superset of JSON
        "merge_method": "dare_linear",
        "base_model": str(paths["prev"]),
        "models": [
            {"model": str(paths["base"]), "parameters": {"weight": ALPHA, "density": 1.0}},
            {"model": str(paths["sft"]), "parameters": {"weight": (1 - ALPHA) / (1 - DROP), "density": 1 - DROP}},
        ],
        "parameters": {"normalize": False, "rescale": False},
        "dtype": dtype,  # the maths' dtype
        "out_dtype": "bfloat16",
    }, indent=2)


def ensure_mergekit(given: str | None) -> Path:
    if given:
        return Path(given)
    venv = OUT / "mergekit-venv"
    exe = venv / "bin" / "mergekit-yaml"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # torch pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "torch==2.13.0",
                        f"mergekit=={MERGEKIT_VERSION}"], check=True)
    return exe


def timed(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one child process, as GNU time reports them.

    Through /usr/bin/time because a child's ru_maxrss seen from this (large) process would count
    the pages of this process that the child held before its exec."""
    report = OUT / "time.txt"
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", str(report), *cmd],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    wall, max_kb = report.read_text().split()[-2:]
    return float(wall), int(max_kb) * 1024


def cpu_bench(runs: int, mergekit: str | None) -> dict:
    paths = make_checkpoints(OUT / "merge_ckpts")
    exe = ensure_mergekit(mergekit)
    out_ours = OUT / "merged_ours"
    commands, outs = {}, {}
    # mergekit twice: maths in fp32 as ours, and in bf16 (faster, leaner, less exact): the targets
    # are judged against the faster and the leaner of the two.
    for dtype in MERGEKIT_DTYPES:
        config = OUT / f"mergekit_imm_{dtype}.yml"
        config.write_text(mergekit_config(paths, dtype))
        outs[f"mergekit-{dtype}"] = OUT / f"merged_mergekit_{dtype}"
        commands[f"mergekit-{dtype}"] = [str(exe), str(config), str(outs[f"mergekit-{dtype}"]),
                                         "--random-seed", str(SEED), "--quiet"]
    outs["imm"] = out_ours
    commands["imm"] = [sys.executable, "-m", "imm_tui", "merge", "--base", str(paths["base"]), "--prev",
                       str(paths["prev"]), "--sft", str(paths["sft"]), "--alpha", str(ALPHA), "--drop", str(DROP),
                       "--seed", str(SEED), "--out", str(out_ours)]
    samples: dict[str, list[tuple[float, int]]] = {tool: [] for tool in commands}
    load_before = os.getloadavg()[0]
    for run in range(runs):
        for tool, cmd in commands.items():
            shutil.rmtree(outs[tool], ignore_errors=True)
            samples[tool].append(timed(cmd))
            print(f"run {run + 1}/{runs} {tool:17s} {samples[tool][-1][0]:6.2f} s  "
                  f"{samples[tool][-1][1] / 1e9:5.2f} GB", flush=True)
    check_same_step(paths, outs)
    med = {tool: {"wall_s": statistics.median(s[0] for s in v), "peak_rss_bytes": statistics.median(s[1] for s in v),
                  "samples": [{"wall_s": w, "peak_rss_bytes": r} for w, r in v]} for tool, v in samples.items()}
    theirs = [med[f"mergekit-{d}"] for d in MERGEKIT_DTYPES]
    return {
        "machine": machine(), "runs": runs, "alpha": ALPHA, "drop_rate": DROP, "parameters": parameter_count(),
        "mergekit_version": MERGEKIT_VERSION, "results": med,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "speedup": min(r["wall_s"] for r in theirs) / med["imm"]["wall_s"],
        "rss_ratio": med["imm"]["peak_rss_bytes"] / min(r["peak_rss_bytes"] for r in theirs),
    }


def check_same_step(paths: dict[str, Path], outs: dict[str, Path]) -> None:
    """Both outputs are the same IMM step: on one tensor, each element is either the step with sft's
    delta dropped or with it kept and rescaled, and the kept fraction is 1 - p. Elements with a
    small delta are left out: there bf16 rounding hides which of the two it is."""
    import torch

    from engine.merge.checkpoint import CheckpointReader

    name = "model.layers.0.mlp.up_proj.weight"
    base, prev, sft = (CheckpointReader(paths[r]).get(name).float() for r in ("base", "prev", "sft"))
    dropped = ALPHA * base + (1 - ALPHA) * prev
    kept_step = dropped + (1 - ALPHA) / (1 - DROP) * (sft - prev)
    large = (sft - prev).abs() > (sft - prev).abs().median()
    for label, folder in outs.items():
        got = CheckpointReader(folder).get(name).float()[large]
        is_kept = (got - kept_step[large]).abs() < (got - dropped[large]).abs()
        worst = torch.minimum((got - kept_step[large]).abs(), (got - dropped[large]).abs()).max().item()
        kept = is_kept.float().mean().item()
        print(f"{label:17s} {name}: kept fraction {kept:.4f} (expected {1 - DROP}); "
              f"largest distance to either outcome {worst:.2e}")
        if abs(kept - (1 - DROP)) > 0.01:
            raise RuntimeError(f"{label}: kept fraction {kept} is not 1 - p; the two runs differ in method")


def machine() -> str:
    import platform

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def cuda_bench(repeats: int = 20) -> dict:
    """Bandwidth of a device-to-device copy vs our fused kernel, on tensors already on the GPU.

    The kernel is timed four ways over the Qwen-shaped tensors: all 290 tensors in one launch
    (ResidentMerge, what a sweep over a model held in GPU memory uses; with its default launch
    width and with the other one of 4 / 8 warps), one launch per tensor as
    merge_checkpoints does (Python launch cost included), the same launches replayed from a CUDA
    graph (the kernels' own time), and the embedding alone (136M elements, one launch). Bytes
    counted: base, prev and sft read and the output written once, 2 bytes each (bf16)."""
    import torch
    import triton

    from engine.merge import cuda_kernel as merge_cuda
    from engine.merge.maths import tensor_seed

    dev = torch.device("cuda")
    shapes = qwen_shapes(qwen_config())

    def seconds(fn) -> float:
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / repeats

    src = torch.empty(2**30, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    copy_bw = 2 * src.numel() / seconds(lambda: dst.copy_(src))  # noqa: F821 (both deleted only below)
    del src, dst
    tensors = {name: [torch.randn(shape, device=dev).to(torch.bfloat16) for _ in range(4)] for name, shape in shapes.items()}
    moved = sum(t[0].numel() for t in tensors.values()) * 2 * 4
    seeds = {name: tensor_seed(SEED, name) for name in tensors}

    def merge_all(p):
        for name, (b, q, s, o) in tensors.items():
            merge_cuda.imm_step_fused(o, b, q, s, ALPHA, p, 1.0, seeds[name])

    def graphed(p):
        merge_all(p)  # compile outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            merge_all(p)
        return graph.replay

    emb = tensors["model.embed_tokens.weight"]
    emb_bytes = emb[0].numel() * 2 * 4
    configs = {}
    for block, warps in ((1024, 4), (4096, 8), (8192, 8), (4096, 16)):
        merge_cuda.BLOCK, merge_cuda.NUM_WARPS = block, warps
        configs[f"BLOCK={block},warps={warps}"] = emb_bytes / seconds(
            lambda: merge_cuda.imm_step_fused(emb[3], *emb[:3], ALPHA, DROP, 1.0, SEED)) / 1e9
    merge_cuda.BLOCK, merge_cuda.NUM_WARPS = 4096, 8
    names = list(tensors)
    roles = [[tensors[n][i] for n in names] for i in (3, 0, 1, 2)]
    resident = merge_cuda.ResidentMerge(*roles)
    other_warps = 4 if merge_cuda.NUM_WARPS == 8 else 8
    resident_other = merge_cuda.ResidentMerge(*roles, num_warps=other_warps)
    rates = {}
    for p in (DROP, 0.0):
        rates[f"all tensors, ResidentMerge (one launch), p={p}"] = moved / seconds(
            lambda p=p: resident.run(ALPHA, p, [1.0] * len(names), [seeds[n] for n in names]))
        rates[f"all tensors, ResidentMerge with {other_warps} warps, p={p}"] = moved / seconds(
            lambda p=p: resident_other.run(ALPHA, p, [1.0] * len(names), [seeds[n] for n in names]))
        rates[f"all tensors, launched one by one, p={p}"] = moved / seconds(lambda p=p: merge_all(p))
        rates[f"all tensors, CUDA graph, p={p}"] = moved / seconds(graphed(p))
        rates[f"embedding only, p={p}"] = emb_bytes / seconds(
            lambda p=p: merge_cuda.imm_step_fused(emb[3], *emb[:3], ALPHA, p, 1.0, SEED))
    result = {
        "card": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
        "num_warps": merge_cuda.NUM_WARPS,
        "copy_bandwidth_GBps": copy_bw / 1e9,
        "merge_GBps": {k: v / 1e9 for k, v in rates.items()},
        "ratio": {k: v / copy_bw for k, v in rates.items()},
        "embedding_GBps_by_launch_config": configs,
    }
    print(json.dumps(result, indent=2))
    return result


def results_section(cpu: dict | None, gpu: dict | None) -> str:
    lines = ["## Merge", "",
             "One IMM step (alpha 0.5, DARE p 0.3, maths in fp32) on three Qwen2.5-0.5B-shaped bf16 checkpoints",
             "(494M parameters, 2 shards each, random weights), made and measured by `benchmarks/merge_bench.py`.", ""]
    if cpu:
        r = cpu["results"]
        load = cpu["load_average_1min"]
        lines += [f"CPU: {cpu['machine']}; median of {cpu['runs']} alternating runs, each tool a fresh process; "
                  f"the machine was shared (1-min load average {load['before']:.1f} before, {load['after']:.1f} after).", "",
                  "| tool | wall (s) | peak RSS (GB) |", "| --- | ---: | ---: |"]
        labels = {f"mergekit-{d}": f"mergekit {cpu['mergekit_version']} dare_linear, {d} maths" for d in MERGEKIT_DTYPES}
        for tool, label in (*labels.items(), ("imm", "imm merge (fp32 maths)")):
            lines.append(f"| {label} | {r[tool]['wall_s']:.2f} | {r[tool]['peak_rss_bytes'] / 1e9:.2f} |")
        lines += ["", f"Against the faster / leaner mergekit run: speed-up {cpu['speedup']:.1f}x (target >= 3x); "
                      f"peak RSS ratio {cpu['rss_ratio']:.2f} (target <= 0.5). Wall time is the whole process "
                      "(Python and torch start-up included); peak RSS from GNU time.", ""]
    if gpu:
        lines += [f"GPU: {gpu['card']} (torch {gpu['torch']}, Triton {gpu.get('triton', '?')}), tensors already "
                  f"in GPU memory; ResidentMerge launches {gpu.get('num_warps', 8)} warps a program unless "
                  "the row says otherwise.", "",
                  "| measure | GB/s (read + written) | share of copy bandwidth |", "| --- | ---: | ---: |",
                  f"| device-to-device copy, 1 GiB | {gpu['copy_bandwidth_GBps']:.0f} | 100% |"]
        for k, v in gpu["merge_GBps"].items():
            lines.append(f"| fused merge kernel, {k} | {v:.0f} | {gpu['ratio'][k]:.0%} |")
        whole = gpu["ratio"][f"all tensors, ResidentMerge (one launch), p={DROP}"]
        whole0 = gpu["ratio"]["all tensors, ResidentMerge (one launch), p=0.0"]
        lines += ["", f"Target >= 70% of the measured bandwidth. Over the whole model in one launch the kernel "
                      f"reaches {whole:.0%} with DARE (p={DROP}) and {whole0:.0%} without, "
                      f"{'meeting' if min(whole, whole0) >= 0.7 else 'missing'} the target; on the embedding "
                      "alone it runs at the copy bandwidth. One launch per tensor (what merge_checkpoints "
                      "does, between disk reads) is bound by Python's launch cost.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mergekit", help="an existing mergekit-yaml (default: make a venv under benchmarks/out)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    out_json = OUT / "merge_bench.json"
    previous = json.loads(out_json.read_text()) if out_json.exists() else {}
    if args.device == "cuda":
        previous["cuda"] = cuda_bench()
    else:
        previous["cpu"] = cpu_bench(args.runs, args.mergekit)
        c = previous["cpu"]
        print(f"\nmedians of {args.runs}: " + ", ".join(f"{tool} {r['wall_s']:.2f} s {r['peak_rss_bytes'] / 1e9:.2f} GB"
                                                     for tool, r in c["results"].items())
              + f" -> {c['speedup']:.1f}x faster, peak RSS ratio {c['rss_ratio']:.2f}")
    out_json.write_text(json.dumps(previous, indent=2))
    write_section(results_section(previous.get("cpu"), previous.get("cuda")))


if __name__ == "__main__":
    main()
