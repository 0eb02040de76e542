"""Generation and evaluation with one worker: this tree's chunk dealing (engine.stages.resumable.
run_chunks over every temperature's or task's chunks at once) against another tree's (`--root`:
main as it was, generate_chunks per temperature and per task), on one GPU in the same call.

Workload: a random-weight Qwen2.5-0.5B-shaped bf16 checkpoint (benchmarks/generate_bench.py);
generation: 192 prompts of about 300 characters, k = 3 over temperatures 0.2 / 0.4 / 0.6 (one
sample each), 256 new tokens forced (random weights never stop), chunks of 64; evaluation:
evaluate_tasks on arith_add3 / arith_add4 / arith_mix3, 128 questions each, greedy, 256 new
tokens, chunks of 64. One warm-up pass, then --repeats timed passes of each. `--kernels torch`
runs the fast decoder's step on SDPA and torch sampling where the tree has Triton kernels (to tell
the chunk dealing's cost from the kernels').

    python benchmarks/workers_bench.py --root TREE [--label NAME] [--kernels torch] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPERATURES = (0.2, 0.4, 0.6)
NEW = 256
CHUNK = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the tree whose engine is measured")
    parser.add_argument("--label", default="")
    parser.add_argument("--checkpoint", default="/tmp/workers-bench-0.5b")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--kernels", choices=["auto", "torch"], default="auto")
    parser.add_argument("--out")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.root).resolve()))
    sys.path.insert(1, str(HERE))
    import torch

    import engine.stages.resumable as resumable
    from engine.config import EvalConfig
    from engine.models.generation import HFGenerator
    from engine.stages.evaluate import evaluate_tasks
    from engine.tasks import get_task
    from generate_bench import make_checkpoint, prompts_of

    folder = Path(args.checkpoint)
    if not (folder / "config.json").exists():
        make_checkpoint("0.5B", folder, "cuda")
    gen = HFGenerator(folder, "cuda", torch.bfloat16, batch_size=CHUNK)
    decoder = getattr(gen, "decoder", None)
    if args.kernels == "torch" and hasattr(decoder, "kernels"):
        decoder.kernels = "torch"
    prompts = prompts_of(192, 300)
    tasks = {name: (get_task(name), "id" if i == 0 else "ood") for i, name in enumerate(["arith_add3", "arith_add4", "arith_mix3"])}
    eval_cfg = EvalConfig(max_new_tokens=NEW, batch_size=CHUNK)

    def generation():
        if hasattr(resumable, "run_chunks"):  # this tree: every temperature's chunks at once
            chunks = [c for t in TEMPERATURES for c in resumable.chunks_of(prompts, t, 1, NEW, (), seed=0, chunk_size=CHUNK)]
            resumable.run_chunks(gen, chunks)
        else:  # the other tree: one temperature after the other
            for t in TEMPERATURES:
                resumable.generate_chunks(gen, prompts, t, 1, NEW, (), seed=0, chunk_size=CHUNK)
        return len(prompts) * len(TEMPERATURES) * NEW

    def evaluation():
        evaluate_tasks(gen, tasks, eval_cfg, 128, 0)
        return 3 * 128 * NEW

    rows = {}
    for name, fn in (("generation", generation), ("evaluation", evaluation)):
        fn()  # warm-up: CUDA graphs, allocator
        times = []
        for _ in range(args.repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            tokens = fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        rows[name] = {"seconds": [round(t, 2) for t in times], "tokens_per_s": round(tokens / min(times))}
    result = {"label": args.label or args.root, "kernels": getattr(decoder, "kernels", "torch"), "card": torch.cuda.get_device_name(), "rows": rows}
    print(json.dumps(result), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
