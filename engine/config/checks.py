"""The checks the schema cannot make alone: settings that must agree with each other, model paths
that must exist, task names known to the registry and custom task data that must parse. Each
returns its errors, so a config's every error is reported at once."""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from ..domain import BUILTIN_PREFIX, GenerationBackend, Method, ModelSource, SFTBackend
from ..errors import ConfigError, UserError
from .derived import derived_grad_accum
from .schema import RunConfig
from .types import check_name

BUILTIN_MODELS = ("tiny-arith",)  # engine.train.builtin.BUILTINS
GGUF_PACKAGES = ("gguf", "accelerate")  # what transformers needs to read one (the gguf extra)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HOST_ENTRY = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s+slots=(\d+)")  # one line of a DeepSpeed hostfile

Errors = Iterator[ConfigError]


def local_path(value: str) -> Path | None:
    """`value` as an existing local path (~ expanded), else None (also for text no path can be)."""
    try:
        local = Path(value).expanduser()
        return local if value and "\x00" not in value and local.exists() else None
    except (RuntimeError, OSError):  # ~unknown-user
        return None


def _model_path(path: str, value: str, gguf: bool = False) -> Errors:
    local, source = local_path(value), ModelSource.of(value)
    if source is ModelSource.BUILTIN:
        allowed = [BUILTIN_PREFIX + m for m in BUILTIN_MODELS]
        if value not in allowed:
            yield ConfigError(path, value, "one of " + ", ".join(allowed))
    elif gguf and source is ModelSource.GGUF:
        if local is None or not local.is_file():
            yield ConfigError(path, value, "an existing GGUF file (this path is not a file)")
            return
        missing = [m for m in GGUF_PACKAGES if importlib.util.find_spec(m) is None]
        if missing:
            yield ConfigError(path, value, f"a GGUF file with its readers installed (missing: {', '.join(missing)}; pip install -e '.[gguf]')")
    elif local is not None:
        if not local.is_dir():
            gguf_too = "a GGUF file (*.gguf) or " if gguf else ""
            yield ConfigError(path, value, f"{gguf_too}a model folder (config.json + weights), not this file")
    elif value.startswith(("/", ".", "~")) or not HUB_ID.match(value):
        yield ConfigError(path, value, f"an existing local model folder, a hub id like 'Qwen/Qwen2.5-0.5B-Instruct', or {BUILTIN_PREFIX}NAME")


def hosts_errors(path: str, hosts: list[str]) -> Errors:
    """sft.hosts: distinct "HOST slots=N" entries (N >= 1), as a DeepSpeed hostfile has them."""
    seen = set()
    for i, entry in enumerate(hosts):
        m = HOST_ENTRY.fullmatch(entry.strip())
        if not m or int(m.group(2)) < 1:
            yield ConfigError(f"{path}[{i}]", entry, "'HOST slots=N' with a host name or address and N >= 1 GPUs")
        elif m.group(1) in seen:
            yield ConfigError(f"{path}[{i}]", entry, "each host once")
        else:
            seen.add(m.group(1))


def _as_errors(check: Callable[[], object]) -> Errors:
    """A check that raises ConfigError, as the errors it found."""
    try:
        check()
    except ConfigError as exc:
        yield from exc.errors


def _tasks(cfg: RunConfig) -> Errors:
    from ..tasks import get_task, task_names

    known = task_names() + sorted(cfg.tasks.specs)
    for path, name in [("tasks.id", cfg.tasks.id)] + [(f"tasks.ood[{i}]", n) for i, n in enumerate(cfg.tasks.ood)]:
        if name not in known:
            yield ConfigError(path, name, "one of " + ", ".join(known))
    for name, spec in cfg.tasks.specs.items():
        named = list(_as_errors(lambda: check_name("tasks." + name, name)))
        yield from named
        if named:
            continue
        if not isinstance(spec, dict):
            yield ConfigError(f"tasks.{name}", spec, "a table of the task's fields (path, kind, question, answer)")
            continue
        fields = list(_as_errors(lambda: get_task(name, spec)))  # the table's fields (tasks.NAME.FIELD)
        yield from fields
        if not fields and spec.get("path") and name in cfg.all_tasks():
            yield from _task_data(name, spec, train=name == cfg.tasks.id or spec.get("shots") == "train")


def _task_data(name: str, spec: dict, train: bool) -> Errors:
    """A task read from a local path: its splits exist, parse and hold records with the named
    fields, checked now rather than when a stage first reads them, after the run was created."""
    from ..tasks import get_task

    task = get_task(name, spec)
    try:
        for split in ["test"] + ([task.train_split] if train else []):
            task.load(split)
    except UserError as exc:
        yield ConfigError(f"tasks.{name}.path", spec["path"], f"readable task data ({exc})")


def _settings_agree(cfg: RunConfig) -> Errors:
    if cfg.vanilla_from != "previous" and cfg.method != Method.VANILLA:
        yield ConfigError("vanilla_from", cfg.vanilla_from, f"previous with method '{cfg.method}' (only vanilla restarts from the base)")
    if len(set(cfg.report_to)) != len(cfg.report_to):
        yield ConfigError("report_to", cfg.report_to, "each tracker at most once")
    g = cfg.generation
    if g.vllm_tensor_parallel > 1 and g.backend != GenerationBackend.VLLM:
        yield ConfigError("generation.vllm_tensor_parallel", g.vllm_tensor_parallel, "1 with generation.backend = 'hf'")
    if g.source == "gold" and cfg.teacher.path:
        yield ConfigError("generation.source", g.source, "model when teacher.path is set (gold rationales need no teacher)")
    s = cfg.sft
    if s.global_batch_size:  # GPUs unknown until run time (num_gpus 0 = all visible): one at least
        yield from _as_errors(lambda: derived_grad_accum(s, s.num_gpus if s.backend != SFTBackend.HF and s.num_gpus else 1))
    for key, value in (("grad_decay", s.grad_decay), ("mask_top_p", s.mask_top_p)):
        if value != 1 and s.backend == SFTBackend.DEEPSPEED:
            yield ConfigError(f"sft.{key}", value, "1 with sft.backend = 'deepspeed' (the interventions run on the hf backend)")
    if s.compile and s.backend == SFTBackend.DEEPSPEED:
        yield ConfigError("sft.compile", s.compile, "false with sft.backend = 'deepspeed' (compilation is the hf backend's)")
    for key, setting, allowed in (("kernels", s.kernels, "'auto' or 'eager'"), ("precision", s.precision, "'fp32'")):
        if setting in ("liger", "bf16") and s.backend == SFTBackend.DEEPSPEED:
            yield ConfigError(f"sft.{key}", setting, f"{allowed} with sft.backend = 'deepspeed' (an hf backend option)")
    if s.kernels == "liger" and cfg.device == "cpu":  # other devices are checked when SFT starts
        yield ConfigError("sft.kernels", s.kernels, "'auto' or 'eager' with device = 'cpu' (liger-kernel runs on CUDA only)")
    yield from hosts_errors("sft.hosts", s.hosts)
    if s.hosts and s.backend == SFTBackend.HF:
        yield ConfigError("sft.hosts", s.hosts, "[] with sft.backend = 'hf' (several machines need 'deepspeed' or 'auto')")
    for i, k in enumerate(cfg.eval.k):
        if k > cfg.eval.samples:
            yield ConfigError(f"eval.k[{i}]", k, f"<= eval.samples ({cfg.eval.samples}): pass@k needs n >= k samples")
    if cfg.merge.mode == "importance" and cfg.method != Method.IMM:
        yield ConfigError("merge.mode", cfg.merge.mode, f"uniform with method '{cfg.method}' (importance-weighted merging is IIMM: method imm)")


def config_errors(cfg: RunConfig) -> list[ConfigError]:
    """Every error of a config the schema accepted, in the order of its settings."""
    errors = list(_settings_agree(cfg))
    errors += _model_path("model.path", cfg.model.path, gguf=True)
    if cfg.teacher.path:
        errors += _model_path("teacher.path", cfg.teacher.path)
    errors += _tasks(cfg)
    return errors
