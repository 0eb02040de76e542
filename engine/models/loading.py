"""Loading and saving Hugging Face model folders; device and dtype choice.

Checkpoints are written to a temporary sibling and renamed into place, so a folder that exists
under its final name is always complete.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable


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


def load_tokenizer(path: str | Path, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    tok.padding_side = padding_side
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str | Path, device: str, dtype):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    return model.to(device)


def tmp_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def clear_stale(final: Path) -> None:
    """Remove a final folder and any temporary siblings left by an interrupted stage."""
    for leftover in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()


def save_checkpoint(model, tokenizer, final: Path, dtype=None) -> Path:
    """Write model + tokenizer to a temporary folder, then rename it to `final`."""
    final = Path(final)
    tmp = tmp_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)
    (model.to(dtype) if dtype is not None else model).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, final)
    return final


def write_atomic(final: Path, content: str | Callable[[Path], None]) -> None:
    """Write `content` (text, or a function that writes the file at the path it is given, e.g. a
    torch.save too large to hold in memory twice) to a temporary sibling, then rename it to `final`."""
    tmp = tmp_sibling(final)
    content(tmp) if callable(content) else tmp.write_text(content)
    os.replace(tmp, final)
