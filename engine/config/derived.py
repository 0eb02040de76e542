"""What stages derive from a validated config: the samples per temperature, the SFT backend and
gradient accumulation a stage uses, and which model paths the build stage makes."""
from __future__ import annotations

from ..domain import SFTBackend
from ..errors import ConfigError
from .schema import GenerationConfig, SFTConfig

def samples_per_temperature(g: GenerationConfig) -> list[int]:
    """generation.k samples of each question dealt round-robin: sample i at temperatures[i % T]."""
    return [len(range(j, g.k, len(g.temperatures))) for j in range(len(g.temperatures))]


def derived_grad_accum(s: SFTConfig, gpus: int) -> int:
    """Micro-batches per optimizer step on `gpus` GPUs: sft.grad_accum, or the one that makes
    sft.global_batch_size exactly when that is set."""
    if not s.global_batch_size:
        return s.grad_accum
    per_micro = s.batch_size * gpus
    if s.global_batch_size % per_micro:
        raise ConfigError("sft.global_batch_size", s.global_batch_size,
                          f"a multiple of sft.batch_size x GPUs = {s.batch_size} x {gpus} = {per_micro}")
    return s.global_batch_size // per_micro


def hf_only_options(s: SFTConfig) -> list[str]:
    """The SFT settings only the hf backend has that are on (sft.backend auto then picks hf)."""
    return [k for k, on in (("grad_decay", s.grad_decay != 1), ("mask_top_p", s.mask_top_p != 1), ("compile", s.compile),
                            ("kernels", s.kernels == "liger"), ("precision", s.precision == "bf16")) if on]


def sft_backend(s: SFTConfig, visible_gpus: int) -> SFTBackend:
    """The SFT backend a stage runs: sft.backend, with auto resolved for `visible_gpus` GPUs."""
    if s.backend != SFTBackend.AUTO:
        return SFTBackend(s.backend)
    several = bool(s.hosts) or (s.num_gpus or visible_gpus) > 1
    return SFTBackend.DEEPSPEED if several and not hf_only_options(s) else SFTBackend.HF


def sft_step_examples(s: SFTConfig):
    """What fixes the examples per optimizer step: sft.global_batch_size when set, else the
    per-device batch x grad_accum and, with DeepSpeed, the GPUs."""
    if s.global_batch_size:
        return s.global_batch_size
    return s.batch_size * s.grad_accum, s.num_gpus if s.backend != SFTBackend.HF else 1
