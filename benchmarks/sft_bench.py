"""SFT throughput on one GPU (the hf backend) and with DeepSpeed ZeRO-3 on 1 and 2 GPUs.

Models: random weights from Qwen2Config with the real Qwen2.5-0.5B / -1.5B architecture numbers
(vocabulary 151,936, tied embeddings), made on the device. Data: GSM8K-like examples of 250-450
tokens (random ids), 60-120 of them prompt, loss on the rest. Global batch 128 (the paper's).

Loops, in the same run: `before` is the hf loop as it was before this benchmark's section
(padded micro-batches with the attention mask, the model's own loss over full logits, bf16
autocast over fp32 weights, torch AdamW, loss.item() after every micro-batch, micro-batch 4);
`now` is engine.train.sft.fit (length-bucketed steps, no mask, the chunked head loss, fused
AdamW, one sync a step) at the micro-batch sizes given, optionally compiled, with gradient
checkpointing, liger-kernel's fused kernels (sft.kernels = liger; else eager) and/or bf16 weights
with fp32 masters in the optimizer (sft.precision = bf16; else fp32). Each configuration
runs --steps optimizer steps after one untimed warm-up step (compilation happens there).
tokens/s counts real (non-pad) tokens; MFU = 6 x parameters x tokens/s / the card's dense bf16
peak (989 TFLOP/s for an H100 SXM, 989 for an H200; attention FLOPs not counted).

--deepspeed runs the engine's deepspeed backend (engine.train.deepspeed_launcher.train) on the
1.5B shape at each of --ds-stages (ZeRO 2 and/or 3) with 1 and then 2 GPUs where visible
(micro-batch --ds-micro, global batch 128, two epochs of --ds-steps steps; the second epoch is
timed, so DeepSpeed's start and the first steps stay out).

Prints a table, writes benchmarks/out/sft_bench.json and, with --write-results, the "SFT on GPU"
section of benchmarks/RESULTS.md.

    python benchmarks/sft_bench.py [--shapes 0.5b,1.5b] [--now 16,32,16c,16lb,32lbg] [--before-steps 1] [--deepspeed]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

from results_md import write_section  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import SFTConfig  # noqa: E402
from engine.train.textdata import IGNORE, Encoded, batches  # noqa: E402

GLOBAL_BATCH = 128
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16, SXM
SHAPES = {  # Qwen2.5 config.json numbers
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2),
}


def qwen_config(shape: str):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, use_cache=False, **SHAPES[shape])


def new_model(shape: str):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(qwen_config(shape), dtype=torch.float32, attn_implementation="sdpa")
    return model


def gsm8k_like(n: int, vocab: int, seed: int = 0) -> list[Encoded]:
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        length, prompt = rng.randint(250, 450), rng.randint(60, 120)
        ids = [rng.randrange(1000, vocab) for _ in range(length)]
        items.append(Encoded(ids, [IGNORE] * prompt + ids[prompt:]))
    return items


def card() -> tuple[str, float]:
    import torch

    name = torch.cuda.get_device_name()
    for key, peak in PEAK_TFLOPS.items():
        if key in name:
            return name, peak
    return name, float("nan")


class StepClock:
    """A progress reporter that timestamps each optimizer step (fit syncs once a step) and keeps its
    loss (the same seeded model and data in every configuration: the losses compare the kernels)."""

    unit = None

    def __init__(self):
        self.times, self.tokens, self.losses = [], [], []

    def start(self, total, unit, restored=0):
        self.times.append(time.perf_counter())

    def update(self, step, loss=None, tokens=0):
        self.times.append(time.perf_counter())
        self.tokens.append(tokens)
        self.losses.append(None if loss is None else round(loss, 4))

    def rate(self) -> tuple[float, float]:
        """(tokens/s, seconds a step) over the steps after the first."""
        seconds = self.times[-1] - self.times[1]  # times[0]: the start; times[i]: after step i
        return sum(self.tokens[1:]) / seconds, seconds / (len(self.tokens) - 1)


def before_loop(model, items, micro: int, steps: int, clock: StepClock) -> None:
    """The hf loop as it was (engine/train/sft.py before the chunked loss), for comparison."""
    import torch

    from engine.train.schedule import lr_scheduler, optimizer_step

    accum = GLOBAL_BATCH // micro
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sched = lr_scheduler(opt, steps + 1, 0, "cosine")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    model.train()
    clock.start(steps + 1, "steps")
    step, since, tokens = 0, 0, 0
    for ids, mask, labels in batches(items, micro, 0, 0):
        with autocast:
            loss = model(input_ids=ids.cuda(), attention_mask=mask.cuda(), labels=labels.cuda()).loss
        (loss / accum).backward()
        loss.item()
        tokens += int(mask.sum())
        since += 1
        if since == accum:
            optimizer_step(model, opt, sched, 1.0)
            step += 1
            clock.update(step, tokens=tokens)
            since = tokens = 0
            if step == steps + 1:
                return


OPTIONS = {"c": " + compile", "g": " + checkpointing", "l": " + liger", "b": " + bf16 masters"}


def measure(shape: str, loop: str, micro: int, steps: int, options: str = "") -> dict:
    """One configuration; options: letters of OPTIONS."""
    import torch

    from engine.train.sft import fit

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = new_model(shape)
    params = sum(p.numel() for p in model.parameters())
    items = gsm8k_like(GLOBAL_BATCH * (steps + 1), model.config.vocab_size)
    clock = StepClock()
    try:
        if loop == "before":
            before_loop(model, items, micro, steps, clock)
        else:
            cfg = SFTConfig(epochs=1, lr=1e-5, batch_size=micro, grad_accum=GLOBAL_BATCH // micro, warmup=0.0,
                            compile="c" in options, grad_checkpointing="g" in options,
                            kernels="liger" if "l" in options else "eager", precision="bf16" if "b" in options else "fp32")
            fit(model, items, 0, cfg, "cuda", 0, lambda _: None, clock, max_steps=steps + 1)
        torch.cuda.synchronize()
        tokens_s, step_s = clock.rate()
        error = None
    except torch.OutOfMemoryError as exc:
        tokens_s = step_s = None
        error = f"out of memory ({str(exc).splitlines()[0][:80]})"
    name, peak = card()
    row = {"shape": shape, "loop": loop + "".join(OPTIONS[o] for o in options),
           "micro_batch": micro,
           "global_batch": GLOBAL_BATCH, "params": params, "tokens_per_s": round(tokens_s) if tokens_s else None,
           "step_s": round(step_s, 3) if step_s else None,
           "mfu_pct": round(100 * 6 * params * tokens_s / (peak * 1e12), 1) if tokens_s else None,
           "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1), "losses": clock.losses, "error": error}
    del model
    return row


def deepspeed_rows(shape: str, steps: int, micro: int = 8, stages: tuple[int, ...] = (3,)) -> list[dict]:
    """The deepspeed backend at each ZeRO stage on 1 and 2 GPUs (those visible); tokens/s of the
    second epoch from the worker's lines."""
    import torch

    from engine.models.tiny import char_tokenizer
    from engine.train.deepspeed_launcher import train

    name, peak = card()
    rows = []
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks" / "out") as tmp:
        init = Path(tmp) / "init"
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(qwen_config(shape), dtype=torch.bfloat16)
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(init)
        del model
        char_tokenizer().save_pretrained(init)  # one token a character, ids < 151,936
        rng = random.Random(0)
        chars = "0123456789+-*/= abcdefghij"
        pairs = [("".join(rng.choices(chars, k=rng.randint(60, 120))), "".join(rng.choices(chars, k=rng.randint(180, 330))))
                 for _ in range(GLOBAL_BATCH * steps)]
        for stage, gpus in [(stage, gpus) for stage in stages for gpus in (1, 2)]:
            if gpus > torch.cuda.device_count():
                continue
            cfg = SFTConfig(backend="deepspeed", num_gpus=gpus, epochs=2, lr=1e-5, batch_size=micro,
                            grad_accum=GLOBAL_BATCH // (micro * gpus), warmup=0.0, max_length=512, zero_stage=stage)
            lines = []
            info = train(init, pairs, cfg, Path(tmp) / f"out{stage}-{gpus}", "cuda", torch.bfloat16, 0, lines.append)
            ends = [float(m.group(1)) for line in lines if (m := re.search(r"step \d+/\d+, ([0-9.]+) s\)", line))]
            epoch_s = ends[1] - ends[0]
            tokens_s = info["tokens"] / 2 / epoch_s
            rows.append({"shape": shape, "loop": f"deepspeed ZeRO-{stage}, {gpus} GPU", "micro_batch": micro,
                         "global_batch": GLOBAL_BATCH, "params": params, "tokens_per_s": round(tokens_s),
                         "step_s": round(epoch_s / steps, 3),
                         "mfu_pct": round(100 * 6 * params * tokens_s / (peak * 1e12 * gpus), 1),
                         "peak_gib": info.get("peak_gpu_gib"), "error": None})
            if gpus == 2:
                rows[-1]["scaling"] = round(rows[-1]["tokens_per_s"] / rows[-2]["tokens_per_s"], 2)
            print(json.dumps(rows[-1]), flush=True)
    return rows


@contextlib.contextmanager
def profiled(enabled: bool):
    if not enabled:
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        yield
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70), flush=True)


def versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for pkg in ("transformers", "deepspeed", "liger-kernel", "triton"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def render(result: dict) -> str:
    lines = ["| shape | loop | micro-batch | tokens/s | s/step | MFU % | peak GiB | note |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        note = r["error"] or (f"x{r['scaling']} over 1 GPU" if "scaling" in r else "")
        lines.append(f"| {r['shape']} | {r['loop']} | {r['micro_batch']} | {r['tokens_per_s'] or '-'} | "
                     f"{r['step_s'] or '-'} | {r['mfu_pct'] or '-'} | {r['peak_gib']} | {note} |")
    return "\n".join(lines)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="0.5b,1.5b")
    parser.add_argument("--now", default="16,32,16c", help="configurations of the `now` loop: micro-batch sizes, "
                        "each with c (torch.compile), g (gradient checkpointing), l (liger-kernel) and/or b "
                        "(bf16 weights, fp32 masters), e.g. 16,32c,16lb,32lbg")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per configuration")
    parser.add_argument("--before-steps", type=int, default=1, help="timed steps of the `before` loop (slow)")
    parser.add_argument("--deepspeed", action="store_true", help="also the deepspeed backend on 1 and 2 GPUs (1.5B)")
    parser.add_argument("--ds-steps", type=int, default=4)
    parser.add_argument("--ds-micro", type=int, default=8, help="micro-batch of the deepspeed runs")
    parser.add_argument("--ds-stages", default="3", help="ZeRO stages of the deepspeed runs, e.g. 2,3")
    parser.add_argument("--profile", action="store_true", help="print the CUDA kernels that took the most time in each configuration")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("sft_bench needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    now = [re.fullmatch(r"(\d+)([cglb]*)", v.strip()) for v in args.now.split(",")]
    for shape in args.shapes.split(","):
        if args.before_steps:
            rows.append(measure(shape, "before", 4, args.before_steps))
            print(json.dumps(rows[-1]), flush=True)
        for m in now:
            with profiled(args.profile):
                rows.append(measure(shape, "now", int(m.group(1)), args.steps, m.group(2)))
            print(json.dumps(rows[-1]), flush=True)
    if args.deepspeed:
        rows += deepspeed_rows("1.5b", args.ds_steps, args.ds_micro, tuple(int(x) for x in args.ds_stages.split(",")))
    name, peak = card()
    result = {"card": name, "peak_tflops": peak, "date": time.strftime("%Y-%m-%d"), "versions": versions(),
              "steps": args.steps, "rows": rows}
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sft_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = render(result)
    print(table)
    if args.write_results:
        write_results_section(result, table)


def write_results_section(result: dict, table: str) -> None:
    v = ", ".join(f"{k} {val}" for k, val in result["versions"].items())
    write_section(
        "## SFT on GPU\n\n"
        "`benchmarks/sft_bench.py`: random-weight Qwen2.5-0.5B / -1.5B shapes, GSM8K-like examples of\n"
        "250-450 tokens, global batch 128; `before` is the hf loop as it was, `now` is engine.train.sft.fit;\n"
        f"MFU against {result['peak_tflops']:g} TFLOP/s dense bf16. {result['card']}, {result['date']}, {v}.\n\n"
        f"{table}\n")


if __name__ == "__main__":
    main()
