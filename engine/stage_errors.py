"""What a failed stage records as its error: the exception, and for out of memory (a CUDA OOM or a
MemoryError) which settings to lower and how to resume with them (`imm resume RUN --set ...`
takes the settings in config.RESUMABLE_KEYS)."""
from __future__ import annotations

import os

from .config import RunConfig
from .runstate.names import Stage


def _half(n: int) -> int:
    return max(1, n // 2)


def memory_hint(cfg: RunConfig, run_id: str, stage: Stage) -> str:
    """The settings that bound a stage's memory: those a resume may change first (with the
    command), then those that would change results (a new run)."""
    g, s, e, a = cfg.generation, cfg.sft, cfg.eval, cfg.analyze
    if stage == Stage.SFT:
        sets = [f"sft.batch_size={_half(s.batch_size)}"]
        lower = f"lower the per-device sft.batch_size (now {s.batch_size})"
        if not s.global_batch_size:  # grad_accum is derived from global_batch_size when that is set
            sets.append(f"sft.grad_accum={s.grad_accum * s.batch_size // _half(s.batch_size)}")
            lower += f" and raise sft.grad_accum (now {s.grad_accum}) to keep the examples per optimizer step"
        if not s.grad_checkpointing:
            lower += " (or turn on sft.grad_checkpointing: --set sft.grad_checkpointing=true)"
        results = f"sft.max_length (now {s.max_length})"
    elif stage == Stage.GENERATE:
        sets, lower = [f"generation.batch_size={_half(g.batch_size)}"], f"lower generation.batch_size (now {g.batch_size})"
        results = f"generation.max_new_tokens (now {g.max_new_tokens})"
    elif stage == Stage.EVAL:
        sets, lower = [f"eval.batch_size={_half(e.batch_size)}"], f"lower eval.batch_size (now {e.batch_size})"
        results = f"eval.max_new_tokens (now {e.max_new_tokens or 'the task default'})"
    elif stage == Stage.ANALYZE:
        sets, lower = [f"analyze.batch_size={_half(a.batch_size)}"], f"lower analyze.batch_size (now {a.batch_size})"
        results = f"sft.max_length (now {s.max_length})"
    else:  # build, merge: no batch to lower; the CPU has the most memory
        key = "merge.device" if stage == Stage.MERGE else "device"
        sets, lower, results = [f"{key}=cpu"], f"run it on the CPU ({key})", ""
    hint = f"out of memory: {lower}, then `imm resume {run_id} " + " ".join(f"--set {kv}" for kv in sets) + "`"
    return hint + (f"; {results} bounds memory too, but changing it changes results (a new run)" if results else "")


def worker_hint(run_id: str, stage: Stage) -> str:
    """What to do after a generation worker failed for another reason than memory."""
    key = "generation.workers" if stage == Stage.GENERATE else "eval.workers"
    return (f"its traceback is in the run's log; once the cause is fixed (or with fewer workers: --set {key}=N), "
            f"`imm resume {run_id}` continues with every chunk the workers finished")


def stage_error(exc: BaseException, cfg: RunConfig, run_id: str, stage: Stage) -> str:
    from .models.worker_pool import WorkerFailed, is_out_of_memory

    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if is_out_of_memory(exc) or getattr(exc, "out_of_memory", False):
        return f"{error} ({memory_hint(cfg, run_id, stage)})"
    return f"{error} ({worker_hint(run_id, stage)})" if isinstance(exc, WorkerFailed) else error


def fail_for_test(t: int, stage: Stage) -> None:
    """Fault-injection point for the out-of-memory tests: with IMM_TEST_FAULT="T:STAGE:memory"
    the stage raises MemoryError as it starts."""
    if os.environ.get("IMM_TEST_FAULT") == f"{t}:{stage}:memory":
        raise MemoryError("injected by IMM_TEST_FAULT")
