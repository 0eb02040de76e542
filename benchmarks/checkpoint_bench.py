"""What an SFT training checkpoint costs (engine/train/checkpointing.py), to choose
sft.checkpoint_every / sft.checkpoint_minutes.

    .venv/bin/python benchmarks/checkpoint_bench.py                  # the tiny base's shape, CPU
    python benchmarks/checkpoint_bench.py --shape qwen0.5b --device cuda

Builds a model of the given shape with random weights (a real config, no download), as the hf
SFT loop holds it (fp32 master weights), takes optimizer steps on random tokens so AdamW has its
state, then times: one optimizer step (batch x length tokens), TrainingCheckpoints.save (the file
written atomically to benchmarks/out/, median of --runs) and restore. Prints the figures and
writes the "SFT training checkpoints" section of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from results_md import write_section  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"

SHAPES = {
    # the sizes of the builtin tiny-arith base (engine/models/tiny.py; a Llama, same tensors)
    "tiny": dict(vocab_size=100, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, tie_word_embeddings=True),
    # Qwen2.5-0.5B's shape
    "qwen0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                     num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    # Qwen2.5-1.5B's shape
    "qwen1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                     num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
}


def timed(fn, device: str) -> float:
    import torch

    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=0, help="tokens a row (default 96 for tiny, else 512)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    args.length = args.length or (96 if args.shape == "tiny" else 512)
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from engine.train.checkpointing import Position, TrainingCheckpoints
    from engine.train.schedule import lr_scheduler, optimizer_step

    torch.manual_seed(0)
    cfg = Qwen2Config(**SHAPES[args.shape], max_position_embeddings=max(2048, args.length))
    model = Qwen2ForCausalLM(cfg).to(args.device).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sched = lr_scheduler(opt, 100, 3, "cosine")
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.length), device=args.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device == "cuda")

    def step():
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer_step(model, opt, sched, 1.0)

    step()  # warm-up; AdamW's state exists from here
    step_s = statistics.median(timed(step, args.device) for _ in range(args.runs))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"checkpoint-{args.shape}.pt"
    ckpt = TrainingCheckpoints(path, 1, 0, "bench", log=lambda _: None)
    save_s = statistics.median(timed(lambda: ckpt.save(Position(0, 1, 1, [0.0]), model, opt, sched, None), args.device)
                               for _ in range(args.runs))
    size = path.stat().st_size
    load_s = timed(lambda: ckpt.restore(model, opt, sched, None), args.device)
    path.unlink()

    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    row = (f"| {args.shape} ({params / 1e6:.1f}M parameters) | {device} | {size / 2**20:,.0f} MiB "
           f"({size / params:.1f} bytes/parameter) | {save_s:.2f} s | {load_s:.2f} s | {step_s:.3f} s "
           f"({args.batch} x {args.length} tokens) | {save_s / step_s:.1f} |")
    print(row)
    section = RESULT_HEAD + row + "\n"
    results = ROOT / "benchmarks" / "RESULTS.md"
    if "## SFT training checkpoints" in results.read_text():  # keep the rows of other shapes / devices
        old = results.read_text().split("## SFT training checkpoints", 1)[1].split("\n## ", 1)[0]
        kept = [line for line in old.splitlines() if line.startswith("| ") and not line.startswith(f"| {args.shape} (")
                and not line.startswith("| shape") and not line.startswith("| ---")]
        section = RESULT_HEAD + "".join(line + "\n" for line in kept) + row + "\n"
    write_section(section)


RESULT_HEAD = """## SFT training checkpoints

`benchmarks/checkpoint_bench.py`: one training checkpoint of the hf SFT loop (fp32 weights,
AdamW's two moments, schedule, RNG, data position), written atomically; random weights of the
shape, AdamW state from real steps. "Save / step" is how many optimizer steps one save costs.

| shape | device | file | save | restore | optimizer step | save / step |
| --- | --- | --- | --- | --- | --- | --- |
"""


if __name__ == "__main__":
    main()
