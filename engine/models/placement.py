"""Where generation and evaluation run: how many worker processes (generation.workers,
eval.workers) and which devices each one gets. No torch at import: the dry run reads this too.

"auto" is one worker per visible GPU (one per group of generation.vllm_tensor_parallel GPUs with
vLLM), and one on a machine without a GPU. A number N asks for N workers: on GPUs they are dealt
round-robin over the GPU groups (two workers may share a card), on the CPU they are N processes
that split the torch threads between them."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """One worker's place: the physical GPU ids it sees (CUDA_VISIBLE_DEVICES), none on the CPU."""

    gpus: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return "cuda:" + "+".join(self.gpus) if self.gpus else "cpu"

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"


def visible_gpus() -> list[str]:
    """The physical ids of the GPUs this process may use, in CUDA_VISIBLE_DEVICES order."""
    import torch

    count = torch.cuda.device_count()
    named = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return named[:count] if named else [str(i) for i in range(count)]


def slots(workers: int | str, device: str, gpus: list[str], tensor_parallel: int = 1) -> list[Slot]:
    """The workers of a stage on `device` ("cpu" or "cuda") with these visible GPU ids. A worker
    needs `tensor_parallel` GPUs; the GPUs left over after whole groups stay idle."""
    if device != "cuda":
        return [Slot()] * (1 if workers == "auto" else int(workers))
    groups = [tuple(gpus[i : i + tensor_parallel]) for i in range(0, len(gpus) - tensor_parallel + 1, tensor_parallel)]
    if not groups:
        from ..errors import ConfigError

        raise ConfigError("generation.vllm_tensor_parallel", tensor_parallel, f"at most the {len(gpus)} visible GPU(s)")
    count = len(groups) if workers == "auto" else int(workers)
    return [Slot(groups[i % len(groups)]) for i in range(count)]


def threads_per_worker(threads: int, workers: int) -> int:
    """Torch CPU threads of each of `workers` CPU processes sharing `threads` (at least one)."""
    return max(1, threads // workers)
