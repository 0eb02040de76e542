"""`imm run --dry-run`: the resolved plan of a run (stages, data sizes, expected samples) without
loading a model or writing anything. Task data is read (local JSONL) to count questions; a task
whose data cannot be read here is reported, not fatal."""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
from pathlib import Path

from .config import RunConfig, derived_grad_accum, samples_per_temperature, sft_backend
from .errors import ConfigError, UserError
from .runstate.plan import plan
from .models.ds_runner import host_gpus, hostfile_text, launch_command
from .models.placement import visible_gpus
from .train.schedule import optimizer_steps
from .domain import Method, ModelSource, SFTBackend


def split_size(task, split: str) -> str | int:
    try:
        return len(task.load(split))
    except (UserError, KeyError) as exc:
        return f"unavailable here ({str(exc).splitlines()[0][:120]})"


def dry_run_gpus(cfg: RunConfig, backend: SFTBackend) -> tuple[int, str]:
    """GPUs SFT would train on with `backend`, and the assumption behind the number."""
    s = cfg.sft
    if backend == SFTBackend.HF:
        return 1, "backend hf: one device"
    if s.hosts:
        return host_gpus(s.hosts, s.num_gpus), f"sft.hosts: {len(s.hosts)} machine(s)"
    if s.num_gpus:
        return s.num_gpus, "sft.num_gpus"
    visible = len(visible_gpus())
    if visible:
        return visible, "sft.num_gpus 0: all visible here"
    return 8, "sft.num_gpus 0 = all visible at run time; none visible here, so 8 (the method's) assumed"


def workers_line(cfg: RunConfig, workers: int | str, key: str) -> str:
    """The worker processes of a generation or evaluation stage and their devices, as they would
    start on this machine (engine.models.placement), or over sft.hosts with their launch."""
    import torch

    if cfg.sft.hosts:
        from .models.host_workers import host_labels

        labels = host_labels(cfg.sft.hosts, cfg.sft.num_gpus, "cuda")
        return (f"  workers (sft.hosts): {len(labels)} ranks on {', '.join(labels)}; "
                + launch_line(cfg.sft, "engine.models.rank_worker"))

    from .models.placement import slots

    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    gpus = visible_gpus() if device == "cuda" else []
    if device == "cuda" and not gpus:  # a GPU preset planned on a machine without one: say so, not an error
        return f"  workers ({key} = {workers}): on the GPUs visible at run time (none visible here)"
    places = slots(workers, device, gpus, cfg.generation.vllm_tensor_parallel)
    how = "in the engine process" if len(places) == 1 else "worker processes, chunks dealt to the free one"
    threads = "" if gpus else ", the torch threads split between them" * (len(places) > 1)
    return f"  workers ({key} = {workers}): {len(places)} on {', '.join(s.label for s in places)} ({how}{threads})"


def launch_line(s, module: str = "engine.train.deepspeed_worker") -> str:
    """The DeepSpeed launch a stage would run (JOB = its job folder, made at run time): the SFT
    worker's, or with sft.hosts the generation ranks'; and the hostfile it would write there."""
    cmd = launch_command(Path("JOB/job.json"), s.num_gpus, os.environ.get("CUDA_VISIBLE_DEVICES"), 0, s.hosts, module)
    cmd[0], cmd[cmd.index("--master_port") + 1] = "python", "PORT"  # this interpreter; a free port at run time
    line = "launch: " + shlex.join(cmd)
    if s.hosts:
        line += f"; JOB/hostfile: {hostfile_text(s.hosts).strip().replace(chr(10), '; ')}"
    return line


def exemplar_line(cfg: RunConfig, task) -> str:
    g = cfg.generation
    if g.source == "gold":
        return "the train split's gold rationales (generation.source gold; no generation)"
    if not g.fewshot:
        return "0-shot"
    try:
        pool = task.fixed_exemplars() if g.exemplars == "fixed" else task.shot_pool()
    except (UserError, KeyError) as exc:
        return f"{g.fewshot}-shot {g.exemplars} (exemplars unavailable here: {str(exc).splitlines()[0][:120]})"
    if len(pool) < g.fewshot:
        raise ConfigError("generation.fewshot", g.fewshot, f"at most {len(pool)}: task {task.name!r} has {len(pool)} {g.exemplars} exemplars")
    if g.exemplars == "fixed":
        return f"{g.fewshot} fixed exemplars (the same for every question), from {len(pool)}"
    return f"{g.fewshot} exemplars drawn per question from {len(pool)}"


def describe(cfg: RunConfig) -> str:
    """The plan. Counting questions downloads nothing: a task without local data shows as
    unavailable (and the call sets no environment variable: the app runs it in its own process)."""
    from .tasks.sources import no_hub_reads

    with no_hub_reads():
        return _describe(cfg)


def _describe(cfg: RunConfig) -> str:
    from .tasks import get_task

    g, s, m, e = cfg.generation, cfg.sft, cfg.merge, cfg.eval
    lines = [f"plan of {cfg.name}: method {cfg.method}, {cfg.iterations} iterations, seed {cfg.seed}, device {cfg.device}"]
    kind = {ModelSource.BUILTIN: "builtin, built offline",
            ModelSource.GGUF: "GGUF file, converted once into the home's models cache",
            ModelSource.FOLDER_OR_HUB: "local folder or hub id; not loaded"}[ModelSource.of(cfg.model.path)]
    lines.append(f"model: {cfg.model.path} ({kind}), dtype {cfg.model.dtype}, chat template: {'on' if cfg.model.chat_template else 'off'}")
    if cfg.teacher.path:
        lines.append(f"teacher (distillation; generates the samples): {cfg.teacher.path}")

    lines.append("tasks:")
    n_train = 0
    for i, name in enumerate(cfg.all_tasks()):
        task = get_task(name, cfg.tasks.specs.get(name))
        test = split_size(task, "test")
        evaluated = min(test, cfg.tasks.eval_size) if isinstance(test, int) and cfg.tasks.eval_size else test
        line = f"  {name} ({'in-domain' if i == 0 else 'out-of-domain'}): test {test}, evaluated {evaluated}"
        if i == 0:
            train = split_size(task, task.train_split)
            line += f"; {task.train_split} {train}"
            if isinstance(train, int):
                n_train = min(train, cfg.tasks.train_size) if cfg.tasks.train_size else train
                line += f", used per iteration {n_train}"
        lines.append(line)

    in_domain = get_task(cfg.tasks.id, cfg.tasks.specs.get(cfg.tasks.id))
    if g.source == "gold":
        per_question = 1
        lines.append(f"generate: {exemplar_line(cfg, in_domain)} -> at most {n_train} samples per iteration")
    else:
        per_question = g.k
        per_temp = ", ".join(f"{n} at {t:g}" for t, n in zip(g.temperatures, samples_per_temperature(g)))
        samples = f"{n_train * g.k:,} samples per iteration" if n_train else "train split unavailable here"
        lines.append(f"generate: {g.k} samples per question in total, round-robin over the temperatures ({per_temp}) "
                     f"-> {samples} (at most {g.max_new_tokens} new tokens, backend {g.backend})")
        lines.append(f"  prompt: {exemplar_line(cfg, in_domain)}; decoding top_p 1.0, top_k off, repetition penalty 1.0, "
                     "every EOS id of the checkpoint (none of its generation_config.json settings)")
        lines.append(workers_line(cfg, g.workers, "generation.workers")
                     + (f"; vLLM tensor parallel over {g.vllm_tensor_parallel} GPUs each" if g.vllm_tensor_parallel > 1 else ""))
    f = cfg.filter
    lines.append("filter: correct samples " + ("whose stated answer is right (\"The answer is ...\", ####, \\boxed{})"
                                               if f.answer == "stated" else "whose answer is right, read leniently (the last "
                                               "number or letter when none is stated)")
                 + ("; each distinct completion of a question once" if f.dedup else "; identical ones too"))
    data = {"imm": "this iteration's kept samples", "vanilla": "this iteration's kept samples",
            "mixture": f"this iteration's kept samples + {cfg.mixture.share:g}x as many from earlier iterations",
            "accumulate": "all kept samples so far"}[cfg.method]
    backend = sft_backend(s, len(visible_gpus()))
    gpus, why = dry_run_gpus(cfg, backend)
    accum = derived_grad_accum(s, gpus)
    per_epoch = "unknown (train split unavailable here)"
    if n_train:
        per_epoch = f"at most {optimizer_steps(n_train * per_question, dataclasses.replace(s, grad_accum=accum, epochs=1), gpus):,}"
    start = " (SFT starts from the base each iteration: vanilla_from base)" if cfg.method == Method.VANILLA and cfg.vanilla_from == "base" else ""
    shown = f"{s.backend} ({backend} here)" if s.backend == SFTBackend.AUTO else s.backend
    zero = f", ZeRO stage {s.zero_stage}" if backend == SFTBackend.DEEPSPEED else ""
    lines.append(f"sft: {data}{start}; {s.epochs} epochs, lr {s.lr:g}, warm-up {s.warmup:g}, {s.schedule}, max length {s.max_length}, "
                 f"backend {shown}{zero}")
    lines.append(f"  batch: per-device {s.batch_size} x grad-accum {accum} x {gpus} GPU(s) ({why}) = global batch "
                 f"{s.batch_size * accum * gpus}; optimizer steps per epoch {per_epoch} (if every sample is kept)")
    interventions = [f"gradient clipping at {s.max_grad_norm:g}" if s.max_grad_norm else "no gradient clipping"]
    if s.grad_decay != 1:
        interventions.append(f"gradient decay gamma {s.grad_decay:g} (layer n of N at lr * gamma^(N-1-n))")
    if s.mask_top_p != 1:
        interventions.append(f"weight masking: top {s.mask_top_p:g} of each tensor by |grad * W| trained")
    lines.append("  " + "; ".join(interventions))
    if backend == SFTBackend.DEEPSPEED:
        lines.append("  " + launch_line(s))
    if cfg.method == Method.IMM:
        lines.append(f"merge: theta = {m.alpha:g} * base + {1 - m.alpha:g} * (prev + DARE_p(sft - prev)), p {m.drop_rate:g}, "
                     f"mode {m.mode}" + (" (layer scales N * I_n / sum I)" if m.mode == "importance" else ""))
    checkpoints = "SFT_t and Merge_t" if cfg.method == Method.IMM else "SFT_t"
    shots = f"{e.fewshot}-shot {e.exemplars}" if e.fewshot else "0-shot"
    lines.append(f"eval: {', '.join(f'pass@{k}' for k in e.k)} from {e.samples} samples per question at temperature {e.temperature:g}, "
                 f"{shots}, on base once and {checkpoints} every iteration")
    lines.append(workers_line(cfg, e.workers, "eval.workers"))
    steps = plan(cfg)
    lines.append(f"stages ({len(steps)}): " + ", ".join(f"{t}:{st}" for t, st in steps))
    lines.append("resolved config: " + json.dumps(cfg.to_dict(), sort_keys=True))
    return "\n".join(lines)
