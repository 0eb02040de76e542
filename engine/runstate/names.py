"""Stage names and statuses, in one place: the plan, the driver, adopt rules and reports read them."""
from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """The steps of the method (Figure 5), in the order an iteration runs them."""

    BUILD = "build"  # iteration 0: build the builtin base model
    GENERATE = "generate"
    FILTER = "filter"
    SFT = "sft"
    MERGE = "merge"
    EVAL = "eval"
    ANALYZE = "analyze"


# The stage info key of the stage's peak GPU memory (GiB; torch.cuda.max_memory_allocated since the
# stage started; for the deepspeed backend, the largest over its workers). Absent without a GPU.
PEAK_GPU_KEY = "peak_gpu_gib"


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RunStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"
    # Never stored: a run stored as running whose engine process is gone.
    INTERRUPTED = "interrupted"
    # Never stored: the run's folder is gone (deleted or moved by hand); nothing more can run on it.
    MISSING = "missing"


# Adopting a sweep trial as Merge_t keeps these stages of iteration t (adopt re-evaluates Merge_t
# itself) and resets the rest of iteration t and every later stage to pending.
KEPT_ON_ADOPT = (Stage.GENERATE, Stage.FILTER, Stage.SFT, Stage.MERGE, Stage.EVAL)
