"""One generation worker of a stage spread over several machines (sft.hosts), started once per GPU
by DeepSpeed's launcher over the hostfile (engine.models.host_workers); also runs under torchrun.

It reads the job (model, backend, the stage's chunks) from the run's shared home, takes every
WORLD_SIZE-th chunk from the RANK-th, and appends each finished chunk to its own rank-R.jsonl
there (flushed and fsynced); the engine process folds those into the stage's partial file. No
process group is needed: the ranks share nothing but the files.

    python -m engine.models.rank_worker --job JOB/job.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def rank_file(job: Path, rank: int) -> Path:
    return Path(job).parent / f"rank-{rank}.jsonl"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", required=True)
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)))
    args = parser.parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    spec = json.loads(Path(args.job).read_text())

    import torch

    from engine.jsonl import append_record
    from engine.models.backends import make_generator
    from engine.models.loading import torch_dtype
    from engine.models.generation import Chunk

    device = "cuda" if spec["device"] == "cuda" else "cpu"
    if device == "cuda":
        torch.cuda.set_device(args.local_rank)
    else:
        torch.set_num_threads(spec["threads"])
    gen = make_generator(spec["backend"], spec["path"], device, torch_dtype(spec["dtype"], device), spec["batch_size"],
                         spec["trust_remote_code"], spec["tensor_parallel"])
    chunks = [Chunk(**{**c, "stop": tuple(c["stop"])}) for c in spec["chunks"]][rank::world]
    for chunk in chunks:
        tokens = []
        completions = chunk.run(gen, lambda prompts, n: tokens.append(n))
        append_record(rank_file(args.job, rank), {"key": chunk.key, "completions": completions, "tokens": sum(tokens)})
    gen.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
