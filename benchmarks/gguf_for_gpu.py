"""Real weights for the GPU machine: the SmolLM2-135M-Instruct GGUF (98 MB, more than one call to
the lent GPU machine carries: 64 MiB with the working tree) as a half-precision safetensors folder
in files of at most --shard-mib MiB, carried one call at a time; and, there, the check that the
fast decoder gives `generate`'s greedy output on it.

    python benchmarks/gguf_for_gpu.py convert GGUF OUT [--dtype float16] [--shard-mib 56]
    python benchmarks/gguf_for_gpu.py check OUT [--device cuda] [--prompts 32] [--new 96]

convert: dequantise (engine.models.gguf.dequantised), cast, save with transformers' sharding
(a tensor is never split: the tied embedding of 49,152 x 576 is 54 MiB in half precision), then
refuse if any file is larger than asked; prints the files with their sizes. 56 MiB by default:
with this tree (about 6 MiB) a file and the tree fit one call's 64 MiB. float16 by default: the
Q4_1 values (4-bit codes times a float16 scale plus a float16 minimum) keep more of their bits
than in bfloat16; the engine casts to model.dtype when it loads.

check: the arith_add2 chat prompts of `smollm2-135m-real` (2-shot, as its generate stage builds
them) through HFGenerator with fast=False (`generate`) and fast=True (the static-cache decoder,
with its Triton kernels on CUDA where Triton is installed), greedy; prints the share of identical
completions and the first differing ones, and exits 1 unless all are identical.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 2**20


def convert(gguf: Path, out: Path, dtype: str, shard_mib: int) -> list[tuple[str, int]]:
    import torch

    from engine.models.gguf import dequantised

    model, tokenizer = dequantised(gguf)
    model.to(getattr(torch, dtype))
    model.save_pretrained(out, max_shard_size=shard_mib * MIB)
    tokenizer.save_pretrained(out)
    files = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    too_large = [(name, size) for name, size in files if size > shard_mib * MIB]
    if too_large:
        raise SystemExit(f"files over {shard_mib} MiB: {too_large} (a single tensor larger than the limit?)")
    return files


def check(folder: Path, device: str, count: int, new: int) -> int:
    import torch

    from engine.models.generation import HFGenerator
    from engine.tasks import get_task

    task = get_task("arith_add2")
    train = task.load("train")
    prompts = [task.messages(e, train[:2]) for e in task.load("test")[:count]]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    runs = {}
    for fast in (False, True):
        gen = HFGenerator(folder, device, dtype, batch_size=count, fast=fast)
        kernels = gen.decoder.kernels if gen.decoder is not None else "generate"
        runs[fast] = gen.generate(prompts, 0.0, 1, new, stop=task.stop_sequences)
        gen.close()
        print(f"{'fast' if fast else 'generate'} ({kernels}): {sum(bool(o[0]) for o in runs[fast])} non-empty completions")
    same = [a == b for a, b in zip(runs[False], runs[True])]
    print(f"greedy output identical for {sum(same)} of {len(same)} prompts ({device}, {dtype})")
    for i in [i for i, s in enumerate(same) if not s][:3]:
        print(f"--- prompt {i}\ngenerate: {runs[False][i][0]!r}\nfast:     {runs[True][i][0]!r}")
    return 0 if all(same) else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("convert")
    c.add_argument("gguf", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--dtype", default="float16", choices=("float16", "bfloat16"))
    c.add_argument("--shard-mib", type=int, default=56)
    k = sub.add_parser("check")
    k.add_argument("folder", type=Path)
    k.add_argument("--device", default="cuda")
    k.add_argument("--prompts", type=int, default=32)
    k.add_argument("--new", type=int, default=96)
    args = ap.parse_args()
    if args.what == "convert":
        for name, size in convert(args.gguf, args.out, args.dtype, args.shard_mib):
            print(f"{size / MIB:7.1f} MiB  {args.out / name}")
    else:
        raise SystemExit(check(args.folder, args.device, args.prompts, args.new))


if __name__ == "__main__":
    main()
