"""What `imm resume RUN --set KEY=VALUE` may change: how much memory a stage takes, where it runs
and which trackers hear of it, not what it computes, so finished stages keep their meaning.
Anything else (lr, alpha, tasks, seed, k, lengths, ...) would make one run two experiments: a new
run does that."""
from __future__ import annotations

from ..errors import ConfigError
from .derived import sft_step_examples
from .resolver import resolve
from .schema import RunConfig

RESUMABLE_KEYS = ("device", "generation.batch_size", "generation.workers", "eval.batch_size", "eval.workers", "analyze.batch_size",
                  "sft.batch_size", "sft.grad_accum", "sft.num_gpus", "sft.grad_checkpointing", "sft.compile", "sft.kernels",
                  "sft.checkpoint_every", "sft.checkpoint_minutes",
                  "merge.device", "report_to")


def resume_config(config: dict, overrides: list[str]) -> RunConfig:
    """A run's stored config with the overrides of a resume, validated like any override. Refuses
    a key outside RESUMABLE_KEYS, and SFT changes that change the examples per optimizer step."""
    for assignment in overrides:
        key, sep, raw = assignment.partition("=")
        if sep and key.strip() not in RESUMABLE_KEYS:
            raise ConfigError(key.strip(), raw.strip(), "a setting a resume may change: " + ", ".join(RESUMABLE_KEYS)
                              + " (the others change what finished stages mean: start a new run)")
    old, new = resolve(config), resolve(config, overrides)
    if sft_step_examples(old.sft) != sft_step_examples(new.sft):
        before = old.sft.batch_size * old.sft.grad_accum
        raise ConfigError("sft.batch_size", new.sft.batch_size,
                          f"sft.batch_size x sft.grad_accum = {before} (now {old.sft.batch_size} x {old.sft.grad_accum}) "
                          "and sft.num_gpus unchanged, so each optimizer step sees as many examples as before")
    return new
