"""The run config's schema: every setting's type, bounds and default in one place.

pydantic v2 dataclasses (as mergekit and Posting use pydantic models): one validation pass reports
every wrong field at once, and the sections stay standard dataclasses, so `dataclasses.replace`,
`asdict` and `fields` keep working where stages derive settings. Checks across fields and checks
that read files run after this (engine.config.checks)."""
from __future__ import annotations

import dataclasses
from dataclasses import field
from enum import Enum
from typing import Annotated

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from ..domain import GenerationBackend, Method, SFTBackend
from .types import (ALPHA, DROP_RATE, MAX_THREADS, MAX_WORKERS, SEED_MAX, Count, Flag, Ge, Interval, IntMax, Le, Name,
                    Number, OneOf, Text, as_list, auto_or_count, non_empty, text_first, within)

# Unknown keys are refused (a typo must not silently fall back to a default); numbers are finite.
SCHEMA = ConfigDict(extra="forbid", allow_inf_nan=False)

DTYPE = OneOf("auto", "float32", "bfloat16", "float16")  # auto: bf16 on GPU, fp32 on CPU
EXEMPLARS = OneOf("fixed", "random")  # fixed (the same shots for every question) | random (drawn per question)
DEVICE = OneOf("auto", "cpu", "cuda")
REPORT_TO = ("tensorboard", "wandb", "mlflow")  # engine.trackers.BACKENDS
Workers = Annotated[int | str, auto_or_count(MAX_WORKERS, f'"auto" (one per visible GPU, one on the CPU) or a number from 1 to {MAX_WORKERS}'),
                    IntMax(MAX_WORKERS)]
Seed = Annotated[Count, Interval(ge=0, le=SEED_MAX)]
Size = Annotated[Count, Interval(ge=0, le=10**8)]  # questions or examples; 0 = all where the field says so
Batch = Annotated[Count, Interval(ge=1, le=2**16)]
NewTokens = Annotated[Count, Interval(ge=1, le=10**6)]
Shots = Annotated[Count, Interval(ge=0, le=64)]
Strings = Annotated[list[Text], as_list("strings")]
Temperature = Annotated[Number, Ge(0)]
Share = within((lambda v: 0 < v <= 1, "a number in (0, 1] (1 = off)"))


@dataclass(config=SCHEMA)
class TeacherConfig:
    # Distillation: a stronger model generates the training samples instead of the model itself.
    path: Text = ""  # "" = no teacher; else a local folder or a hub id
    dtype: Annotated[Text, DTYPE] = "auto"
    chat_template: Flag = False
    trust_remote_code: Flag = False  # as model.trust_remote_code


@dataclass(config=SCHEMA)
class ModelConfig:
    # "builtin:tiny-arith" (built offline, cached in the home folder), a local folder, a local
    # .gguf file (converted once into the home's models cache), or a hub id.
    path: Text = "builtin:tiny-arith"
    dtype: Annotated[Text, DTYPE] = "auto"
    chat_template: Flag = False
    # Run Python code shipped with the checkpoint (its own modelling/tokenizer files). Off: such
    # code runs with your rights; turn it on only for a model whose code you trust.
    trust_remote_code: Flag = False


@dataclass(config=SCHEMA)
class TasksConfig:
    id: Text = "arith_add3"  # in-domain: trained on and evaluated
    ood: Strings = field(default_factory=lambda: ["arith_add4", "arith_mix3"])
    train_size: Size = 0  # training questions per iteration (0 = the whole train split)
    eval_size: Size = 0  # evaluated questions per task (0 = the whole test split)
    # [tasks.NAME] tables: a custom task over local JSONL, or a built-in task's data moved
    # elsewhere (see engine.tasks.custom). Gathered from the preset's sub-tables.
    specs: dict = field(default_factory=dict)


@dataclass(config=SCHEMA)
class GenerationConfig:
    backend: Annotated[GenerationBackend, text_first] = GenerationBackend.HF
    k: Annotated[Count, Interval(ge=1, le=1024)] = 3  # samples per question in total, dealt round-robin to the temperatures
    temperatures: Annotated[list[Temperature], as_list("numbers"), non_empty("a non-empty list of numbers >= 0")] = field(
        default_factory=lambda: [0.2, 0.4, 0.6])
    max_new_tokens: NewTokens = 512
    fewshot: Shots = 0
    exemplars: Annotated[Text, EXEMPLARS] = "fixed"
    batch_size: Batch = 64
    # model: the model (or the teacher) writes the samples; gold: the train split's gold rationales
    # are the SFT data (one per question; no generation)
    source: Annotated[Text, OneOf("model", "gold")] = "model"
    # worker processes, each with its own copy of the model: "auto" (one per visible GPU, one on
    # the CPU) or a number (engine.models.placement)
    workers: Workers = "auto"
    # vllm backend: GPUs per model copy (tensor parallelism, for models larger than one GPU); the
    # workers take the groups of this many GPUs (data parallelism over the rest)
    vllm_tensor_parallel: Annotated[Count, Interval(ge=1, le=1024)] = 1


@dataclass(config=SCHEMA)
class FilterConfig:
    # Which samples become SFT data. answer: "stated" (the method's reading: the completion states
    # its answer as the prompt asks, "The answer is ...", "####" or \\boxed{}, and that answer is
    # right) or "any" (evaluation's lenient reading: with no stated answer, the last number or
    # letter anywhere counts, so truncated or rambling completions can pass).
    answer: Annotated[Text, OneOf("stated", "any")] = "stated"
    # Keep each distinct correct completion of a question once. The method keeps every correct
    # sample (false); the filter stage's info counts the duplicates either way.
    dedup: Flag = False


@dataclass(config=SCHEMA)
class SFTConfig:
    # hf (transformers + PyTorch, CPU or one GPU) | deepspeed (ZeRO, several GPUs) | auto (deepspeed
    # where several GPUs are visible or sft.hosts is set, unless an hf-only option is on; else hf)
    backend: Annotated[SFTBackend, text_first] = SFTBackend.HF
    num_gpus: Annotated[Count, Interval(ge=0, le=1024)] = 0  # deepspeed backend: GPUs to train on (0 = all visible)
    # deepspeed backend: ZeRO stage 2 (optimizer state and gradients sharded; where the model and
    # its gradients fit each GPU) or 3 (the parameters sharded too, for larger models)
    zero_stage: Annotated[Count, Le(3), OneOf(2, 3)] = 3
    epochs: Annotated[Count, Interval(ge=1, le=1000)] = 3
    lr: Annotated[Number, within((lambda v: v > 0, "a number > 0"))] = 2e-5
    batch_size: Batch = 4  # per device
    grad_accum: Batch = 4  # ignored when global_batch_size is set
    # examples per optimizer step over all GPUs; when set (> 0), grad_accum is derived from it:
    # global_batch_size / (batch_size x GPUs), which must divide exactly
    global_batch_size: Annotated[Count, Interval(ge=0, le=2**24)] = 0
    max_grad_norm: Annotated[Number, Ge(0)] = 1.0  # gradient clipping (0 = none)
    # Interventions of the method's comparison (hf backend): layer-wise gradient decay gamma (the
    # update of layer n of N is scaled by gamma ** (N - 1 - n); 1 = off) and weight masking (SFT
    # changes only this share of each weight tensor, the entries of largest |grad * W| on the
    # first optimizer step; 1 = off). See engine/train/interventions.py.
    grad_decay: Annotated[Number, Share] = 1.0
    mask_top_p: Annotated[Number, Share] = 1.0
    # share of the optimiser steps spent warming up
    warmup: Annotated[Number, within((lambda v: 0 <= v < 1, "a share of the steps in [0, 1)"))] = 0.03
    schedule: Annotated[Text, OneOf("cosine", "linear")] = "cosine"
    max_length: Annotated[Count, Interval(ge=8, le=10**6)] = 1024
    weight_decay: Annotated[Number, Ge(0)] = 0.0
    # Speed (GPU): torch.compile of the decoder (hf backend; the first steps compile, so it pays
    # on long runs) and gradient checkpointing (recompute activations in backward: less memory,
    # about a third more compute). Both off: the CPU default trains as without them.
    compile: Flag = False
    grad_checkpointing: Flag = False
    # Speed (GPU, hf backend; engine/train/kernels.py, engine/train/master_weights.py; not yet
    # verified on a GPU). kernels: "auto" (liger-kernel's fused RMSNorm, SwiGLU, RoPE and linear
    # cross-entropy on CUDA when the package is installed, else PyTorch's ops) | "liger" (those, or
    # an error) | "eager". precision: "fp32" (fp32 weights under bf16 autocast on a GPU) | "bf16"
    # (bf16 weights, fp32 master copy and gradients held by the optimizer; also on the CPU).
    kernels: Annotated[Text, OneOf("auto", "liger", "eager")] = "auto"
    precision: Annotated[Text, OneOf("fp32", "bf16")] = "fp32"
    # deepspeed backend over several machines: one "HOST slots=N" entry per machine (N GPUs),
    # written to a DeepSpeed hostfile; empty = this machine only (engine/train/deepspeed_launcher.py).
    hosts: Strings = field(default_factory=list)
    # Training checkpoints (hf backend; engine/train/checkpointing.py): saved every this many
    # optimizer steps or minutes, whichever comes first (0 = never), so a killed or stopped SFT
    # stage resumes from the last one. A save writes about 12 bytes per parameter (fp32 weights and
    # AdamW's two moments): tens of seconds for a 1.5B model, a few percent of 20 minutes.
    checkpoint_every: Annotated[Count, Interval(ge=0, le=10**9)] = 100
    checkpoint_minutes: Annotated[Number, Ge(0)] = 20.0


@dataclass(config=SCHEMA)
class MergeConfig:
    alpha: Annotated[Number, within(ALPHA)] = 0.5  # weight of the base model
    drop_rate: Annotated[Number, within(DROP_RATE)] = 0.0  # DARE p
    seed: Seed = 0
    mode: Annotated[Text, OneOf("uniform", "importance")] = "uniform"  # importance: IIMM, per-layer N * I_n / sum I
    device: Annotated[Text, DEVICE] = "auto"


@dataclass(config=SCHEMA)
class EvalConfig:
    k: Annotated[list[Annotated[Count, Interval(ge=1, le=1024)]], as_list("integers"), non_empty("a non-empty list of integers >= 1")] = field(default_factory=lambda: [1])
    samples: Annotated[Count, Interval(ge=1, le=1024)] = 1  # completions per question (n of pass@k)
    temperature: Temperature = 0.0  # 0 = greedy
    fewshot: Shots = 0
    exemplars: Annotated[Text, EXEMPLARS] = "fixed"  # as generation.exemplars
    max_new_tokens: Annotated[Count, Interval(ge=0, le=10**6)] = 0  # 0 = the task's default
    batch_size: Batch = 64
    workers: Workers = "auto"  # as generation.workers


@dataclass(config=SCHEMA)
class MixtureConfig:
    # earlier iterations' kept samples mixed in, as a share of this iteration's
    share: Annotated[Number, within((lambda v: 0 <= v <= 10, "a number in [0, 10]"))] = 0.5


@dataclass(config=SCHEMA)
class AnalyzeConfig:
    # off | every | first_last: iterations that get the diagnostics stage (every: the Layers view
    # of every run; one forward and backward over `limit` examples plus a pass over the weights)
    when: Annotated[Text, OneOf("off", "every", "first_last")] = "every"
    data: Text = ""  # importance set: task, task:split or JSONL ("" = the in-domain task's train split)
    limit: Annotated[Count, Interval(ge=1, le=10**8)] = 128  # examples of the importance set
    batch_size: Batch = 16


@dataclass(config=SCHEMA)
class RunConfig:
    name: Name = "run"
    iterations: Annotated[Count, Interval(ge=1, le=1000)] = 2
    method: Annotated[Method, text_first] = Method.IMM
    # method vanilla: SFT_t starts from SFT_{t-1} ("previous") or from the base ("base", as
    # original STaR restarts each outer loop); the samples come from SFT_{t-1} either way
    vanilla_from: Annotated[Text, OneOf("previous", "base")] = "previous"
    seed: Seed = 0
    device: Annotated[Text, DEVICE] = "auto"
    # torch CPU threads: "auto" (the cores other processes leave free, looked at before each
    # stage; OMP_NUM_THREADS when set) or a fixed count (engine.cpu_threads)
    threads: Annotated[int | str, auto_or_count(MAX_THREADS, f'"auto" or a number of threads from 1 to {MAX_THREADS}'),
                       IntMax(MAX_THREADS)] = "auto"
    # The lab's trackers that also get the run's numbers: any of "tensorboard", "wandb", "mlflow"
    # (engine.trackers; each needs its extra, e.g. pip install 'imm[wandb]'); none by default
    report_to: Annotated[list[Annotated[Text, OneOf(*REPORT_TO)]], as_list("strings")] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)

    def to_dict(self) -> dict:
        """Plain values (enums as their text): what config.json, the database and TOML hold."""
        return dataclasses.asdict(self, dict_factory=lambda items: {k: v.value if isinstance(v, Enum) else v for k, v in items})

    def all_tasks(self) -> list[str]:
        return [self.tasks.id, *self.tasks.ood]


__all__ = ["AnalyzeConfig", "EvalConfig", "FilterConfig", "GenerationConfig", "MergeConfig", "MixtureConfig",
           "ModelConfig", "REPORT_TO", "RunConfig", "SFTConfig", "TasksConfig", "TeacherConfig"]
