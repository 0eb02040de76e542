"""SFT backend `deepspeed`: full fine-tuning with DeepSpeed ZeRO (stage 2 or 3, bf16) over several GPUs.

The engine process never imports DeepSpeed. It writes the pairs (JSONL) and a job spec to a
temporary folder, launches

    python -m deepspeed.launcher.runner [--num_gpus N | --include localhost:IDS] \
        --module engine.train.deepspeed_worker --job DIR

as a child process, streams the child's output into the run's log, checks its exit code, and then
turns the 16-bit weights that the worker saved with `save_16bit_model` (pytorch_model.bin) into a
normal Hugging Face folder (safetensors, config, generation config, tokenizer), written to a
temporary sibling and renamed into place by `engine.models.loading.save_checkpoint`.

Training is the `hf` backend's (engine/train/sft.py) on the objective both take from
engine.train.loss: loss on the response tokens only, averaged over the response tokens of each
optimizer step over all GPUs, the step's examples sorted by length and dealt over the ranks
(every rank runs as many micro-batches), the chunked head loss; AdamW (torch's, betas
0.9/0.999, eps 1e-8) with sft.lr and sft.weight_decay, the warm-up + cosine/linear factor,
gradient clipping at sft.max_grad_norm and the same per-epoch shuffle (engine.train.schedule).
A step is batch_size * grad_accum * W examples on W GPUs: with W = 1 the hf backend's steps.
What differs: the parameters live in bf16 with fp32 master weights in the optimizer (ZeRO's bf16
mode) where hf keeps fp32 weights under bf16 autocast. sft.zero_stage picks ZeRO-2 (parameters
whole on every GPU) or ZeRO-3 (parameters sharded, gathered layer by layer).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..config import SFTConfig
from ..errors import UserError
from ..jsonl import write_records
from ..models.placement import visible_gpus
from ..models.ds_runner import HOSTFILE, child_env, free_port, hostfile_text, launch_command

WEIGHTS_FILE = "pytorch_model.bin"
WRAPPER_PREFIX = "model."
TAIL_LINES = 40


def ds_config(cfg: SFTConfig, world_size: int) -> dict:
    """The DeepSpeed config (ZeRO stage sft.zero_stage, bf16) for an SFT run on `world_size` GPUs. The learning-rate
    schedule is not in it: the worker hands DeepSpeed a LambdaLR over engine.train.schedule.lr_factor."""
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.max_grad_norm,  # 0: none
        "bf16": {"enabled": True},
        "zero_optimization": {
            "stage": cfg.zero_stage,
            "overlap_comm": True,
            "contiguous_gradients": True,
            **({"stage3_gather_16bit_weights_on_model_save": True} if cfg.zero_stage == 3 else {}),
        },
        "optimizer": {
            "type": "AdamW",
            # torch_adam: torch.optim.AdamW, so no DeepSpeed op has to be compiled on the box
            "params": {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "betas": [0.9, 0.999], "eps": 1e-8,
                       "torch_adam": True},
        },
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _check_can_run(num_gpus: int, multi_node: bool) -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise UserError("sft.backend = 'deepspeed' needs the deepspeed package (pip install 'imm[gpu]'), "
                        "or use sft.backend = 'hf'")
    if multi_node:  # the hosts' GPUs are not visible from here
        return
    visible = len(visible_gpus())
    if visible == 0:
        raise UserError("sft.backend = 'deepspeed' needs NVIDIA GPUs and none is visible; use sft.backend = 'hf'")
    if num_gpus > visible:
        raise UserError(f"sft.num_gpus = {num_gpus}, but only {visible} GPU(s) are visible")


def run_launcher(cmd: list[str], env: dict, log: Callable[[str], None], cwd: str | None = None) -> None:
    """Run the launcher, passing each output line to `log`; a non-zero exit is a UserError that
    carries the last lines of the output."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1, start_new_session=False)
    assert proc.stdout is not None  # stdout=PIPE
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(f"[deepspeed] {line}")
    finally:
        proc.stdout.close()
        code = proc.wait()
    if code != 0:
        raise UserError(f"DeepSpeed SFT failed (exit code {code}); last lines of its output:\n" + "\n".join(tail))


def convert_checkpoint(init_path: Path, weights: Path, out: Path, save_dtype=None, trust_remote_code: bool = False) -> Path:
    """A Hugging Face folder at `out` (safetensors, config and generation config of init_path, its
    tokenizer) holding the state dict saved at `weights` (save_16bit_model's pytorch_model.bin).
    The model is built on the meta device and takes the loaded tensors as they are, so one copy of
    the weights is in memory; tied weights (lm_head = embed_tokens) are tied again before saving."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from ..models.loading import load_tokenizer, save_checkpoint

    state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    # the worker trains engine.train.loss.response_loss_module, which holds the model as `.model`
    state = {k.removeprefix(WRAPPER_PREFIX): v for k, v in state.items()}
    config = AutoConfig.from_pretrained(str(init_path), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    result = model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    if result.unexpected_keys:
        raise UserError(f"{weights}: unexpected tensors for {type(model).__name__}: {result.unexpected_keys[:5]}")
    still_meta = [n for n, p in model.named_parameters() if p.is_meta]
    if still_meta:
        raise UserError(f"{weights}: no tensors for {still_meta[:5]}")
    # non-persistent buffers (rotary inv_freq) are in no state dict and never saved: give them
    # storage so that nothing in save_pretrained meets a meta tensor
    for mod in model.modules():
        for name, buf in list(mod._buffers.items()):
            if buf is not None and buf.is_meta:
                mod._buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype)
    if (Path(init_path) / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(str(init_path))
    tokenizer = load_tokenizer(init_path, padding_side="right", trust_remote_code=trust_remote_code)
    return save_checkpoint(model, tokenizer, Path(out), dtype=save_dtype)


def write_job(folder: Path, init_path: Path, pairs, cfg: SFTConfig, seed: int, trust_remote_code: bool = False) -> Path:
    write_records(folder / "pairs.jsonl", [{"prompt": prompt, "response": response} for prompt, response in pairs])
    spec = {"init_path": str(init_path), "sft": dataclasses.asdict(cfg), "seed": seed, "trust_remote_code": trust_remote_code,
            "pairs": str(folder / "pairs.jsonl"), "weights_dir": str(folder / "weights"),
            "result": str(folder / "result.json")}
    (folder / "job.json").write_text(json.dumps(spec, indent=1))
    if cfg.hosts:
        (folder / HOSTFILE).write_text(hostfile_text(cfg.hosts))
    return folder / "job.json"


# The worker's rank-0 lines that tell how far it is (see engine.train.deepspeed_worker).
WORKER_TOTAL_RE = re.compile(r"sft worker: .* (\d+) optimizer steps")
WORKER_EPOCH_RE = re.compile(r"mean loss ([0-9.]+) \(step (\d+)/(\d+)")


def progress_from_lines(log: Callable[[str], None], progress) -> Callable[[str], None]:
    """A line handler that logs each worker line and turns the worker's step lines into progress
    (optimizer steps, at the start and after each epoch, with the epoch's mean loss)."""
    def on_line(line: str) -> None:
        log(line)
        if progress is None:
            return
        if m := WORKER_TOTAL_RE.search(line):
            progress.start(int(m.group(1)), "steps")
        elif (m := WORKER_EPOCH_RE.search(line)) and progress.unit:
            progress.update(int(m.group(2)), loss=float(m.group(1)))
    return on_line


def train(init_path: Path, pairs: list[tuple[str, str]], cfg: SFTConfig, out: Path, device: str,
          save_dtype, seed: int, log: Callable[[str], None] = print, progress=None,
          trust_remote_code: bool = False) -> dict:
    """Same contract as engine.train.sft.train: fine-tune init_path on the pairs, save to `out`
    atomically, return an info dict. `device` is ignored: DeepSpeed runs on the visible GPUs.
    Progress comes from the worker's step lines (per epoch: DeepSpeed runs in the child)."""
    _check_can_run(cfg.num_gpus, bool(cfg.hosts))
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()  # memory the engine process cached (generation) goes back first
    out = Path(out)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.ds-", dir=out.parent) as tmp:
        folder = Path(tmp)
        job = write_job(folder, Path(init_path), pairs, cfg, seed, trust_remote_code)
        cmd = launch_command(job, cfg.num_gpus, os.environ.get("CUDA_VISIBLE_DEVICES"), free_port(), cfg.hosts)
        log("sft (deepspeed): " + " ".join(cmd[1:]))
        run_launcher(cmd, child_env(), progress_from_lines(log, progress))
        weights = folder / "weights" / WEIGHTS_FILE
        if not weights.exists():
            raise UserError(f"DeepSpeed SFT exited 0 but wrote no {WEIGHTS_FILE}")
        info = json.loads((folder / "result.json").read_text())
        train_s = time.time() - started
        convert_checkpoint(Path(init_path), weights, out, save_dtype, trust_remote_code)
    info.update(backend="deepspeed", train_s=round(train_s, 1), total_s=round(time.time() - started, 1))
    log(f"sft (deepspeed): {info['world_size']} GPU(s), {info['optimizer_steps']} steps, "
        f"final loss {info['final_loss']:.4f}, {info['total_s']} s")
    return info
