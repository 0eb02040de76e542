"""Presets (TOML) + `--set key.path=value` overrides -> one validated `RunConfig`.

Every rejection is a `ConfigError` naming the field path, the value and what is allowed, raised
before anything is written. Field types come from the dataclass annotations below; ranges and
choices are checked in `validate`.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, UserError

METHODS = ("imm", "vanilla", "mixture", "accumulate")
EXEMPLAR_MODES = ("fixed", "random")
FILTER_ANSWERS = ("stated", "any")
BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = ("tiny-arith",)
GGUF_SUFFIX = ".gguf"  # a GGUF file as model.path: converted once into a model folder (engine.models.gguf)
GGUF_PACKAGES = ("gguf", "accelerate")  # what transformers needs to read one (the gguf extra)
DTYPES = ("auto", "float32", "bfloat16", "float16")
REPORT_TO = ("tensorboard", "wandb", "mlflow")  # engine.trackers.BACKENDS
MAX_THREADS = 1024
MAX_WORKERS = 1024
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HOST_ENTRY = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s+slots=(\d+)")  # one line of a DeepSpeed hostfile
# Run names and custom task names become parts of run ids, folder names and log lines.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_ALLOWED = "1-64 ASCII letters, digits, '_', '-' or '.', starting with a letter or digit"
SEED_MAX = 2**32 - 1  # numpy's and DARE's seeds are 32-bit
# The upper bound of every integer field (a typo like iterations=99999999999999999999 must not
# reach the planner); each is far above any real run. A test checks that every int field is here.
INT_MAX = {
    "iterations": 1000, "seed": SEED_MAX, "tasks.train_size": 10**8, "tasks.eval_size": 10**8,
    "generation.k": 1024, "generation.max_new_tokens": 10**6, "generation.fewshot": 64,
    "generation.batch_size": 2**16, "generation.workers": MAX_WORKERS, "generation.vllm_tensor_parallel": 1024,
    "eval.workers": MAX_WORKERS, "sft.num_gpus": 1024, "sft.epochs": 1000, "sft.batch_size": 2**16,
    "sft.grad_accum": 2**16, "sft.zero_stage": 3, "sft.global_batch_size": 2**24, "sft.max_length": 10**6, "merge.seed": SEED_MAX,
    "sft.checkpoint_every": 10**9,
    "eval.k": 1024, "eval.samples": 1024, "eval.fewshot": 64, "eval.max_new_tokens": 10**6,
    "eval.batch_size": 2**16, "analyze.limit": 10**8, "analyze.batch_size": 2**16, "threads": MAX_THREADS,
}


@dataclass
class TeacherConfig:
    # Distillation: a stronger model generates the training samples instead of the model itself.
    path: str = ""  # "" = no teacher; else a local folder or a hub id
    dtype: str = "auto"
    chat_template: bool = False
    trust_remote_code: bool = False  # as model.trust_remote_code


@dataclass
class ModelConfig:
    # "builtin:tiny-arith" (built offline, cached in the home folder), a local folder, a local
    # .gguf file (converted once into the home's models cache), or a hub id.
    path: str = "builtin:tiny-arith"
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    chat_template: bool = False
    # Run Python code shipped with the checkpoint (its own modelling/tokenizer files). Off: such
    # code runs with your rights; turn it on only for a model whose code you trust.
    trust_remote_code: bool = False


@dataclass
class TasksConfig:
    id: str = "arith_add3"  # in-domain: trained on and evaluated
    ood: list[str] = field(default_factory=lambda: ["arith_add4", "arith_mix3"])
    train_size: int = 0  # training questions per iteration (0 = the whole train split)
    eval_size: int = 0  # evaluated questions per task (0 = the whole test split)
    # [tasks.NAME] tables: a custom task over local JSONL, or a built-in task's data moved
    # elsewhere (see engine.tasks.custom). Gathered from the preset's sub-tables.
    specs: dict = field(default_factory=dict)


@dataclass
class GenerationConfig:
    backend: str = "hf"  # hf (transformers) | vllm
    k: int = 3  # samples per question in total, dealt round-robin to the temperatures
    temperatures: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6])
    max_new_tokens: int = 512
    fewshot: int = 0
    exemplars: str = "fixed"  # fixed (the same shots for every question) | random (drawn per question)
    batch_size: int = 64
    # model: the model (or the teacher) writes the samples; gold: the train split's gold rationales
    # are the SFT data (one per question; no generation)
    source: str = "model"
    # worker processes, each with its own copy of the model: "auto" (one per visible GPU, one on
    # the CPU) or a number (engine.models.placement)
    workers: int | str = "auto"
    # vllm backend: GPUs per model copy (tensor parallelism, for models larger than one GPU); the
    # workers take the groups of this many GPUs (data parallelism over the rest)
    vllm_tensor_parallel: int = 1


@dataclass
class FilterConfig:
    # Which samples become SFT data. answer: "stated" (the method's reading: the completion states
    # its answer as the prompt asks, "The answer is ...", "####" or \\boxed{}, and that answer is
    # right) or "any" (evaluation's lenient reading: with no stated answer, the last number or
    # letter anywhere counts, so truncated or rambling completions can pass).
    answer: str = "stated"
    # Keep each distinct correct completion of a question once. The method keeps every correct
    # sample (false); the filter stage's info counts the duplicates either way.
    dedup: bool = False


@dataclass
class SFTConfig:
    # hf (transformers + PyTorch, CPU or one GPU) | deepspeed (ZeRO, several GPUs) | auto (deepspeed
    # where several GPUs are visible or sft.hosts is set, unless an hf-only option is on; else hf)
    backend: str = "hf"
    num_gpus: int = 0  # deepspeed backend: GPUs to train on (0 = all visible)
    # deepspeed backend: ZeRO stage 2 (optimizer state and gradients sharded; where the model and
    # its gradients fit each GPU) or 3 (the parameters sharded too, for larger models)
    zero_stage: int = 3
    epochs: int = 3
    lr: float = 2e-5
    batch_size: int = 4  # per device
    grad_accum: int = 4  # ignored when global_batch_size is set
    # examples per optimizer step over all GPUs; when set (> 0), grad_accum is derived from it:
    # global_batch_size / (batch_size x GPUs), which must divide exactly
    global_batch_size: int = 0
    max_grad_norm: float = 1.0  # gradient clipping (0 = none)
    # Interventions of the method's comparison (hf backend): layer-wise gradient decay gamma (the
    # update of layer n of N is scaled by gamma ** (N - 1 - n); 1 = off) and weight masking (SFT
    # changes only this share of each weight tensor, the entries of largest |grad * W| on the
    # first optimizer step; 1 = off). See engine/train/interventions.py.
    grad_decay: float = 1.0
    mask_top_p: float = 1.0
    warmup: float = 0.03  # share of the optimiser steps spent warming up
    schedule: str = "cosine"  # cosine | linear
    max_length: int = 1024
    weight_decay: float = 0.0
    # Speed (GPU): torch.compile of the decoder (hf backend; the first steps compile, so it pays
    # on long runs) and gradient checkpointing (recompute activations in backward: less memory,
    # about a third more compute). Both off: the CPU default trains as without them.
    compile: bool = False
    grad_checkpointing: bool = False
    # Speed (GPU, hf backend; engine/train/kernels.py, engine/train/master_weights.py; not yet
    # verified on a GPU). kernels: "auto" (liger-kernel's fused RMSNorm, SwiGLU, RoPE and linear
    # cross-entropy on CUDA when the package is installed, else PyTorch's ops) | "liger" (those, or
    # an error) | "eager". precision: "fp32" (fp32 weights under bf16 autocast on a GPU) | "bf16"
    # (bf16 weights, fp32 master copy and gradients held by the optimizer; also on the CPU).
    kernels: str = "auto"
    precision: str = "fp32"
    # deepspeed backend over several machines: one "HOST slots=N" entry per machine (N GPUs),
    # written to a DeepSpeed hostfile; empty = this machine only (engine/train/deepspeed_launcher.py).
    hosts: list[str] = field(default_factory=list)
    # Training checkpoints (hf backend; engine/train/checkpointing.py): saved every this many
    # optimizer steps or minutes, whichever comes first (0 = never), so a killed or stopped SFT
    # stage resumes from the last one. A save writes about 12 bytes per parameter (fp32 weights and
    # AdamW's two moments): tens of seconds for a 1.5B model, a few percent of 20 minutes.
    checkpoint_every: int = 100
    checkpoint_minutes: float = 20.0


@dataclass
class MergeConfig:
    alpha: float = 0.5  # weight of the base model
    drop_rate: float = 0.0  # DARE p
    seed: int = 0
    mode: str = "uniform"  # uniform (IMM) | importance (IIMM: per-layer N * I_n / sum I)
    device: str = "auto"


@dataclass
class EvalConfig:
    k: list[int] = field(default_factory=lambda: [1])
    samples: int = 1  # completions per question (n of pass@k)
    temperature: float = 0.0  # 0 = greedy
    fewshot: int = 0
    exemplars: str = "fixed"  # fixed | random, as generation.exemplars
    max_new_tokens: int = 0  # 0 = the task's default
    batch_size: int = 64
    workers: int | str = "auto"  # as generation.workers


@dataclass
class MixtureConfig:
    share: float = 0.5  # earlier iterations' kept samples mixed in, as a share of this iteration's


@dataclass
class AnalyzeConfig:
    # off | every | first_last: iterations that get the diagnostics stage (every: the Layers view
    # of every run; one forward and backward over `limit` examples plus a pass over the weights)
    when: str = "every"
    data: str = ""  # importance set: task, task:split or JSONL ("" = the in-domain task's train split)
    limit: int = 128  # examples of the importance set
    batch_size: int = 16


@dataclass
class RunConfig:
    name: str = "run"
    iterations: int = 2
    method: str = "imm"
    # method vanilla: SFT_t starts from SFT_{t-1} ("previous") or from the base ("base", as
    # original STaR restarts each outer loop); the samples come from SFT_{t-1} either way
    vanilla_from: str = "previous"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # torch CPU threads: "auto" (the cores other processes leave free, looked at before each
    # stage; OMP_NUM_THREADS when set) or a fixed count (engine.cpu_threads)
    threads: int | str = "auto"
    # The lab's trackers that also get the run's numbers: any of "tensorboard", "wandb", "mlflow"
    # (engine.trackers; each needs its extra, e.g. pip install 'imm[wandb]'); none by default
    report_to: list[str] = field(default_factory=list)
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
        return dataclasses.asdict(self)

    def all_tasks(self) -> list[str]:
        return [self.tasks.id, *self.tasks.ood]


# ---------------------------------------------------------------- building from dicts


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(value, tp, path: str):
    """Check `value` against annotation `tp`; ints pass as floats; "a,b" strings pass as lists."""
    origin = typing.get_origin(tp)
    if origin is types.UnionType:
        members = typing.get_args(tp)
        if isinstance(value, bool) or not isinstance(value, members):
            raise ConfigError(path, value, " or ".join(_type_name(m) for m in members))
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            (item_tp,) = typing.get_args(tp)
            if item_tp is not str:
                value = [_parse_scalar(v) for v in value]
        if not isinstance(value, list):
            raise ConfigError(path, value, _type_name(tp))
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, value, "a table")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2**1023 else math.inf  # float() of a larger int overflows
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, value, "a finite number")
    if tp is bool or tp is int:
        if type(value) is not tp:
            raise ConfigError(path, value, _type_name(tp))
        return value
    if not isinstance(value, tp):
        raise ConfigError(path, value, _type_name(tp))
    return value


def _build(cls, data: dict, path: str):
    if not isinstance(data, dict):
        raise ConfigError(path or "config", data, "a table of settings")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        shown = key or '""'  # TOML allows an empty key; the message must still name it
        key_path = f"{path}.{shown}" if path else shown
        if key not in known:
            raise ConfigError(key_path, value, f"one of the known keys {sorted(known)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, key_path)
        else:
            kwargs[key] = _coerce(value, tp, key_path)
    return cls(**kwargs)


def _parse_scalar(text: str):
    """A --set value as TOML ("0.3", "true", "[1, 2]", '"x"'); anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `key.path=value` to the nested dict `data` in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", assignment, "KEY.PATH=VALUE, e.g. merge.alpha=0.3")
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(key, raw, "a path through tables of the config")
    node[parts[-1]] = _parse_scalar(raw.strip())


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_preset(path: str | Path, _seen: tuple = ()) -> dict:
    """A preset's settings; `extends = "other.toml"` (relative to the preset) starts from another
    preset and overrides what this one sets. The name defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("extends" if _seen else "preset", str(path), "an existing TOML file (see presets/)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("preset", str(path), f"a readable file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("preset", str(path), f"UTF-8 text (byte {raw[exc.start]:#04x} on line {line} is not)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("preset", str(path), f"valid TOML ({exc})") from None
    name = data.get("name", path.stem)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent or "\x00" in parent:
            raise ConfigError("extends", parent, "the path of another preset, relative to this one")
        parent_path = path.parent / parent
        if parent_path.resolve() in _seen + (path.resolve(),):
            raise ConfigError("extends", parent, "a preset that does not extend this one again (a cycle)")
        data = deep_merge(load_preset(parent_path, _seen + (path.resolve(),)), data)
    data["name"] = name
    return data


def gather_task_specs(data: dict) -> None:
    """Move the [tasks.NAME] sub-tables of a preset into tasks.specs."""
    tasks = data.get("tasks")
    if isinstance(tasks, dict):
        specs = {k: v for k, v in tasks.items() if isinstance(v, dict) and k != "specs"}
        earlier = tasks.get("specs", {})
        if specs and isinstance(earlier, dict):  # else _build refuses tasks.specs
            data["tasks"] = {k: v for k, v in tasks.items() if k not in specs}
            data["tasks"]["specs"] = {**earlier, **specs}


def resolve(preset: str | Path | dict, overrides: list[str] = ()) -> RunConfig:
    """Preset (a file, a preset's name or a dict) + overrides -> validated RunConfig. A local model
    path is made absolute, so a detached engine started elsewhere finds the same folder."""
    from .preset_sources import find_preset

    # overrides edit the dict
    data = load_preset(find_preset(preset)) if not isinstance(preset, dict) else copy.deepcopy(preset)
    for assignment in overrides:
        apply_override(data, assignment)
    gather_task_specs(data)
    cfg = _build(RunConfig, data, "")
    validate(cfg)
    for holder in (cfg.model, cfg.teacher):
        local = _local(holder.path) if holder.path and not holder.path.startswith(BUILTIN_PREFIX) else None
        if local:
            holder.path = str(local.resolve())
    for spec in cfg.tasks.specs.values():
        if spec.get("path"):
            spec["path"] = str(Path(spec["path"]).expanduser().resolve())
    return cfg


# ---------------------------------------------------------------- ranges and choices


def _choice(path: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(path, value, "one of " + ", ".join(map(str, allowed)))


def _at_least(path: str, value, low) -> None:
    if value < low:
        raise ConfigError(path, value, f">= {low}")


def check_alpha(path: str, value: float) -> None:
    """The weight of the base model in the merge (also what `imm sweep --alpha` takes)."""
    if not 0 <= value <= 1:
        raise ConfigError(path, value, "a number in [0, 1]")


def check_drop_rate(path: str, value: float) -> None:
    """DARE's drop probability p: 1 would drop the whole update and divide by zero."""
    if not 0 <= value < 1:
        raise ConfigError(path, value, "a number in [0, 1)")


def check_workers(path: str, value: int | str) -> None:
    if value != "auto" and not (isinstance(value, int) and 1 <= value <= MAX_WORKERS):
        raise ConfigError(path, value, f'"auto" (one per visible GPU, one on the CPU) or a number from 1 to {MAX_WORKERS}')


def check_threads(path: str, value: int | str) -> None:
    if value != "auto" and not (isinstance(value, int) and 1 <= value <= MAX_THREADS):
        raise ConfigError(path, value, f'"auto" or a number of threads from 1 to {MAX_THREADS}')


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


def sft_backend(s: SFTConfig, visible_gpus: int) -> str:
    """The SFT backend a stage runs: sft.backend, with auto resolved for `visible_gpus` GPUs."""
    if s.backend != "auto":
        return s.backend
    several = bool(s.hosts) or (s.num_gpus or visible_gpus) > 1
    return "deepspeed" if several and not hf_only_options(s) else "hf"


def check_hosts(path: str, hosts: list[str]) -> None:
    """sft.hosts: distinct "HOST slots=N" entries (N >= 1), as a DeepSpeed hostfile has them."""
    seen = set()
    for i, entry in enumerate(hosts):
        m = HOST_ENTRY.fullmatch(entry.strip())
        if not m or int(m.group(2)) < 1:
            raise ConfigError(f"{path}[{i}]", entry, "'HOST slots=N' with a host name or address and N >= 1 GPUs")
        if m.group(1) in seen:
            raise ConfigError(f"{path}[{i}]", entry, "each host once")
        seen.add(m.group(1))


def _share(path: str, value: float, what: str) -> None:
    if not 0 < value <= 1:
        raise ConfigError(path, value, f"a number in (0, 1] ({what})")


def is_gguf(model_path: str) -> bool:
    return model_path.lower().endswith(GGUF_SUFFIX)


def built_at_start(model_path: str) -> bool:
    """Whether iteration 0's build stage makes the base model's folder (builtin or GGUF)."""
    return model_path.startswith(BUILTIN_PREFIX) or is_gguf(model_path)


def _local(value: str) -> Path | None:
    """`value` as an existing local path (~ expanded), else None (also for text no path can be)."""
    try:
        local = Path(value).expanduser()
        return local if value and "\x00" not in value and local.exists() else None
    except (RuntimeError, OSError):  # ~unknown-user
        return None


def _check_model_path(path: str, value: str, gguf: bool = False) -> None:
    local = _local(value)
    if value.startswith(BUILTIN_PREFIX):
        _choice(path, value, [BUILTIN_PREFIX + m for m in BUILTIN_MODELS])
    elif gguf and is_gguf(value):
        if local is None or not local.is_file():
            raise ConfigError(path, value, "an existing GGUF file (this path is not a file)")
        missing = [m for m in GGUF_PACKAGES if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(path, value, f"a GGUF file with its readers installed (missing: {', '.join(missing)}; pip install -e '.[gguf]')")
    elif local is not None:
        if not local.is_dir():
            allowed = "a GGUF file (*.gguf) or " if gguf else ""
            raise ConfigError(path, value, f"{allowed}a model folder (config.json + weights), not this file")
    elif value.startswith(("/", ".", "~")) or not HUB_ID.match(value):
        raise ConfigError(
            path, value, f"an existing local model folder, a hub id like 'Qwen/Qwen2.5-0.5B-Instruct', or {BUILTIN_PREFIX}NAME"
        )


def _check_int_bounds(node, prefix: str = "") -> None:
    """Every integer field (and integer list item) against its upper bound in INT_MAX."""
    for f in dataclasses.fields(node):
        path, value = prefix + f.name, getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            _check_int_bounds(value, path + ".")
            continue
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            if type(item) is int and item > INT_MAX[path]:
                raise ConfigError(path if i is None else f"{path}[{i}]", item, f"<= {INT_MAX[path]} (the most imm allows)")


def check_name(path: str, value: str) -> None:
    if not NAME_RE.match(value):
        raise ConfigError(path, value, NAME_ALLOWED)


def _check_task_data(name: str, spec: dict, train: bool) -> None:
    """A task read from a local path: its splits exist, parse and hold records with the named
    fields, checked now rather than when a stage first reads them, after the run was created."""
    from .tasks import get_task

    task = get_task(name, spec)
    try:
        for split in ["test"] + ([task.train_split] if train else []):
            task.load(split)
    except UserError as exc:
        raise ConfigError(f"tasks.{name}.path", spec["path"], f"readable task data ({exc})") from None


def validate(cfg: RunConfig) -> None:
    from .tasks import task_names

    check_threads("threads", cfg.threads)  # first: its message says "auto" or a count
    check_workers("generation.workers", cfg.generation.workers)
    check_workers("eval.workers", cfg.eval.workers)
    _check_int_bounds(cfg)
    check_name("name", cfg.name)
    _at_least("iterations", cfg.iterations, 1)
    _at_least("seed", cfg.seed, 0)
    _choice("method", cfg.method, METHODS)
    _choice("vanilla_from", cfg.vanilla_from, ("previous", "base"))
    if cfg.vanilla_from != "previous" and cfg.method != "vanilla":
        raise ConfigError("vanilla_from", cfg.vanilla_from, f"previous with method {cfg.method!r} (only vanilla restarts from the base)")
    _choice("device", cfg.device, ("auto", "cpu", "cuda"))
    for i, tracker in enumerate(cfg.report_to):
        _choice(f"report_to[{i}]", tracker, REPORT_TO)
    if len(set(cfg.report_to)) != len(cfg.report_to):
        raise ConfigError("report_to", cfg.report_to, "each tracker at most once")
    _check_model_path("model.path", cfg.model.path, gguf=True)
    _choice("model.dtype", cfg.model.dtype, DTYPES)

    from .tasks import get_task

    known = task_names() + sorted(cfg.tasks.specs)
    _choice("tasks.id", cfg.tasks.id, known)
    for i, name in enumerate(cfg.tasks.ood):
        _choice(f"tasks.ood[{i}]", name, known)
    for name, spec in cfg.tasks.specs.items():
        check_name("tasks." + name, name)
        if not isinstance(spec, dict):
            raise ConfigError(f"tasks.{name}", spec, "a table of the task's fields (path, kind, question, answer)")
        get_task(name, spec)  # checks the table's fields (ConfigError tasks.NAME.FIELD)
    for name in cfg.all_tasks():
        spec = cfg.tasks.specs.get(name)
        if spec and spec.get("path"):
            _check_task_data(name, spec, train=name == cfg.tasks.id or spec.get("shots") == "train")
    if cfg.teacher.path:
        _check_model_path("teacher.path", cfg.teacher.path)
        _choice("teacher.dtype", cfg.teacher.dtype, DTYPES)
    _at_least("tasks.train_size", cfg.tasks.train_size, 0)
    _at_least("tasks.eval_size", cfg.tasks.eval_size, 0)

    g = cfg.generation
    _choice("generation.backend", g.backend, ("hf", "vllm"))
    _at_least("generation.k", g.k, 1)
    if not g.temperatures:
        raise ConfigError("generation.temperatures", g.temperatures, "a non-empty list of numbers >= 0")
    for i, t in enumerate(g.temperatures):
        _at_least(f"generation.temperatures[{i}]", t, 0)
    _at_least("generation.max_new_tokens", g.max_new_tokens, 1)
    _at_least("generation.fewshot", g.fewshot, 0)
    _choice("generation.exemplars", g.exemplars, EXEMPLAR_MODES)
    _at_least("generation.batch_size", g.batch_size, 1)
    _choice("generation.source", g.source, ("model", "gold"))
    _at_least("generation.vllm_tensor_parallel", g.vllm_tensor_parallel, 1)
    if g.vllm_tensor_parallel > 1 and g.backend != "vllm":
        raise ConfigError("generation.vllm_tensor_parallel", g.vllm_tensor_parallel, "1 with generation.backend = 'hf'")
    if g.source == "gold" and cfg.teacher.path:
        raise ConfigError("generation.source", g.source, "model when teacher.path is set (gold rationales need no teacher)")

    _choice("filter.answer", cfg.filter.answer, FILTER_ANSWERS)

    s = cfg.sft
    _choice("sft.backend", s.backend, ("hf", "deepspeed", "auto"))
    _choice("sft.zero_stage", s.zero_stage, (2, 3))
    _at_least("sft.num_gpus", s.num_gpus, 0)
    _at_least("sft.epochs", s.epochs, 1)
    if not s.lr > 0:
        raise ConfigError("sft.lr", s.lr, "a number > 0")
    _at_least("sft.batch_size", s.batch_size, 1)
    _at_least("sft.grad_accum", s.grad_accum, 1)
    _at_least("sft.global_batch_size", s.global_batch_size, 0)
    if s.global_batch_size:  # GPUs unknown until run time (num_gpus 0 = all visible): one at least
        derived_grad_accum(s, s.num_gpus if s.backend != "hf" and s.num_gpus else 1)
    _at_least("sft.max_grad_norm", s.max_grad_norm, 0)
    _share("sft.grad_decay", s.grad_decay, "1 = no decay")
    _share("sft.mask_top_p", s.mask_top_p, "1 = no mask")
    for key, value in (("grad_decay", s.grad_decay), ("mask_top_p", s.mask_top_p)):
        if value != 1 and s.backend == "deepspeed":
            raise ConfigError(f"sft.{key}", value, "1 with sft.backend = 'deepspeed' (the interventions run on the hf backend)")
    if s.compile and s.backend == "deepspeed":
        raise ConfigError("sft.compile", s.compile, "false with sft.backend = 'deepspeed' (compilation is the hf backend's)")
    _choice("sft.kernels", s.kernels, ("auto", "liger", "eager"))
    _choice("sft.precision", s.precision, ("fp32", "bf16"))
    for key, value, allowed in (("kernels", s.kernels, "'auto' or 'eager'"), ("precision", s.precision, "'fp32'")):
        if value in ("liger", "bf16") and s.backend == "deepspeed":
            raise ConfigError(f"sft.{key}", value, f"{allowed} with sft.backend = 'deepspeed' (an hf backend option)")
    if s.kernels == "liger" and cfg.device == "cpu":  # other devices are checked when SFT starts
        raise ConfigError("sft.kernels", s.kernels, "'auto' or 'eager' with device = 'cpu' (liger-kernel runs on CUDA only)")
    check_hosts("sft.hosts", s.hosts)
    if s.hosts and s.backend == "hf":
        raise ConfigError("sft.hosts", s.hosts, "[] with sft.backend = 'hf' (several machines need 'deepspeed' or 'auto')")
    if not 0 <= s.warmup < 1:
        raise ConfigError("sft.warmup", s.warmup, "a share of the steps in [0, 1)")
    _choice("sft.schedule", s.schedule, ("cosine", "linear"))
    _at_least("sft.max_length", s.max_length, 8)
    _at_least("sft.weight_decay", s.weight_decay, 0)
    _at_least("sft.checkpoint_every", s.checkpoint_every, 0)
    _at_least("sft.checkpoint_minutes", s.checkpoint_minutes, 0)

    m = cfg.merge
    _at_least("merge.seed", m.seed, 0)
    check_alpha("merge.alpha", m.alpha)
    check_drop_rate("merge.drop_rate", m.drop_rate)
    _choice("merge.mode", m.mode, ("uniform", "importance"))
    _choice("merge.device", m.device, ("auto", "cpu", "cuda"))

    e = cfg.eval
    if not e.k:
        raise ConfigError("eval.k", e.k, "a non-empty list of integers >= 1")
    for i, k in enumerate(e.k):
        _at_least(f"eval.k[{i}]", k, 1)
        if k > e.samples:
            raise ConfigError(f"eval.k[{i}]", k, f"<= eval.samples ({e.samples}): pass@k needs n >= k samples")
    _at_least("eval.samples", e.samples, 1)
    _at_least("eval.temperature", e.temperature, 0)
    _at_least("eval.fewshot", e.fewshot, 0)
    _choice("eval.exemplars", e.exemplars, EXEMPLAR_MODES)
    _at_least("eval.max_new_tokens", e.max_new_tokens, 0)
    _at_least("eval.batch_size", e.batch_size, 1)

    _choice("analyze.when", cfg.analyze.when, ("off", "every", "first_last"))
    _at_least("analyze.limit", cfg.analyze.limit, 1)
    _at_least("analyze.batch_size", cfg.analyze.batch_size, 1)
    if cfg.merge.mode == "importance" and cfg.method != "imm":
        raise ConfigError("merge.mode", cfg.merge.mode, f"uniform with method {cfg.method!r} (importance-weighted merging is IIMM: method imm)")

    if not 0 <= cfg.mixture.share <= 10:
        raise ConfigError("mixture.share", cfg.mixture.share, "a number in [0, 10]")


# ---------------------------------------------------------------- resuming with changed settings

# What `imm resume RUN --set KEY=VALUE` may change: how much memory a stage takes, where it runs
# and which trackers hear of it, not what it computes, so finished stages keep their meaning. Anything else (lr, alpha,
# tasks, seed, k, lengths, ...) would make one run two experiments: a new run does that.
RESUMABLE_KEYS = ("device", "generation.batch_size", "generation.workers", "eval.batch_size", "eval.workers", "analyze.batch_size",
                  "sft.batch_size", "sft.grad_accum", "sft.num_gpus", "sft.grad_checkpointing", "sft.compile", "sft.kernels",
                  "sft.checkpoint_every", "sft.checkpoint_minutes",
                  "merge.device", "report_to")


def sft_step_examples(s: SFTConfig):
    """What fixes the examples per optimizer step: sft.global_batch_size when set, else the
    per-device batch x grad_accum and, with DeepSpeed, the GPUs."""
    if s.global_batch_size:
        return s.global_batch_size
    return s.batch_size * s.grad_accum, s.num_gpus if s.backend != "hf" else 1


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


def flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """A nested config dict as dotted keys (sft.lr: 1e-05) to leaf values; an empty table or list
    is a leaf of None (a config that omits a table and one that leaves it empty say the same)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = None if value in ({}, []) else value
    return out


# ---------------------------------------------------------------- writing TOML


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def to_toml(data: dict) -> str:
    """A config dict (RunConfig.to_dict()) as a preset: scalars first, then one [table] per
    section; tasks.specs become [tasks.NAME] tables. `resolve` of the text gives the same config."""
    data = dict(data)
    tasks = dict(data.get("tasks") or {})
    specs = tasks.pop("specs", None) or {}
    if "tasks" in data:
        data["tasks"] = tasks
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]

    def table(name: str, body: dict) -> None:
        lines.extend(["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in body.items() if v is not None])

    for key, value in data.items():
        if isinstance(value, dict):
            table(key, value)
    for name, spec in specs.items():
        table(f"tasks.{name}", spec)
    return "\n".join(lines) + "\n"
