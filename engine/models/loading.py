"""Loading and saving Hugging Face model folders; device and dtype choice.

Checkpoints are written to a temporary sibling, fsynced and renamed into place (engine.durable),
so a folder that exists under its final name is always complete, also after a power loss.
"""
from __future__ import annotations

import fcntl
import shutil
from pathlib import Path
from typing import Callable

from ..durable import write_then_publish


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError("device", name, "cpu or auto: no CUDA device is visible")
    return name


def torch_dtype(name: str, device: str):
    """The dtype models are held in: 'auto' is bf16 on a GPU and fp32 on the CPU."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, name)  # a validated choice: float32, bfloat16 or float16


def load_tokenizer(path: str | Path, padding_side: str = "left", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    tok.padding_side = padding_side
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str | Path, device: str, dtype, trust_remote_code: bool = False):
    """The checkpoint's model; its own Python code runs only with trust_remote_code (a preset's
    model.trust_remote_code), never by default."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code)
    return model.to(device)


def clear_stale(final: Path) -> None:
    """Remove a final folder and any temporary siblings left by an interrupted stage."""
    for leftover in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()


def save_checkpoint(model, tokenizer, final: Path, dtype=None) -> Path:
    """Write model + tokenizer to a temporary folder, then publish it as `final`."""
    model = model.to(dtype) if dtype is not None else model

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    # The estimate a full disk reports: the weights as saved, a tied tensor once (the tokenizer
    # files are small).
    weights = {t.data_ptr(): t.numel() * t.element_size() for t in model.state_dict().values()}
    return write_then_publish(Path(final), fill, sum(weights.values()))


def made_once(folder: Path, make: Callable[[], None]) -> Path:
    """A model folder of the home's models cache, made by make() first if it is not there yet,
    under a file lock so that two runs starting together do not both make it."""
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "config.json").exists():
            make()
    return folder
