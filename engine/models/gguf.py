"""A GGUF file as the base model: converted once into a Hugging Face folder (safetensors,
tokenizer with its chat template, generation config) in the home's models cache, which every
stage then loads like any other model folder.

transformers reads GGUF (`gguf_file=`, with the `gguf` and `accelerate` packages: the `gguf`
extra) and dequantises it, but flags the model as gguf-quantised, so `save_pretrained` refuses
it: its state dict is loaded into a plain model of the same config, and that is saved.

The cache entry is keyed by the file's contents (sha256, computed once per process for a given
path, size and modification time), so a copied or touched file keeps its folder through a resume
and a changed one gets its own; it is built under a file lock and published by one rename.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable


@functools.lru_cache(maxsize=16)
def _content_key(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def gguf_folder(home: Path, gguf: str | Path) -> Path:
    """Where the converted folder of this GGUF file lives (whether or not it is there yet)."""
    gguf = Path(gguf).resolve()
    stat = gguf.stat()
    return Path(home) / "models" / f"gguf-{gguf.stem}-{_content_key(gguf, stat.st_size, stat.st_mtime_ns)}"


def ensure_gguf(home: Path, gguf: str | Path, log: Callable[[str], None] = print) -> Path:
    """The converted folder of a GGUF file, converting it first if it is not cached yet."""
    from .loading import made_once

    folder = gguf_folder(home, gguf)

    def convert() -> None:
        log(f"converting {gguf} into a Hugging Face folder (once; cached in {folder})")
        convert_gguf(Path(gguf), folder)

    return made_once(folder, convert)


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise `gguf` and write it to `out` as a model folder (through a temporary sibling)."""
    from .loading import save_checkpoint

    model, tokenizer = dequantised(gguf)
    save_checkpoint(model, tokenizer, out)


def dequantised(gguf: Path):
    """(model, tokenizer) of a GGUF file: a plain transformers model holding its dequantised weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf.parent), gguf.name
    # A GGUF file holds tensors and metadata, no Python code: nothing remote to trust.
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name, trust_remote_code=False)
    quantised = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, trust_remote_code=False)
    config = quantised.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=quantised.dtype, trust_remote_code=False)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = quantised.generation_config
    return model, tokenizer
