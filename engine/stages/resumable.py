"""What lets generation and evaluation continue after a kill or a stop instead of starting over.

They generate in chunks of their batch size. Each finished chunk is appended to a partial file
next to the stage's output (samples.jsonl.partial, eval_CHECKPOINT.jsonl.partial) and fsynced
before the next one starts; a resumed stage takes the chunks it finds there and generates only
the others. A chunk's sampling is seeded from (stage seed, temperature, chunk start), so it draws
the same whether it runs in the first attempt or a resumed one, and the resumed output is exactly
the uninterrupted one. The partial file is removed once the stage's output is published.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from ..jsonl import append_record
from ..models.generation import Chunk


def digest(value) -> str:
    """A stable hash of a JSON-able value (settings, prompts, training pairs)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def model_stamp(path: str) -> str:
    """What identifies a model's weights cheaply: a local folder's file names, sizes and
    modification times (a checkpoint made again gets new ones), else the hub id itself."""
    folder = Path(path)
    if not folder.is_dir():
        return str(path)
    return digest([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir()) if f.is_file()])


def chunk_seed(seed: int, temperature: float, start: int) -> int:
    """The sampling seed of the chunk of prompts that starts at `start`."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{temperature}:{start}".encode()).digest()[:4], "little")


class PartialFile:
    """The finished chunks of one output, one JSON line each ({"key", "completions"}) after a
    header line naming the model. A file of another model (the checkpoint was made again) is
    dropped; a torn last line (killed while writing it) is cut off."""

    def __init__(self, final: Path, model: str, log: Callable[[str], None]):
        from ..durable import write_atomic

        self.path = Path(final).with_name(Path(final).name + ".partial")
        self.chunks: dict[str, list[list[str]]] = {}
        header = json.dumps({"model": model}) + "\n"
        if self.path.exists():
            data = self.path.read_bytes()
            good = 0
            if data.startswith(header.encode()):
                good = len(header.encode())
                for line in data[good:].splitlines(keepends=True):
                    try:
                        record = json.loads(line)
                    except ValueError:
                        break
                    if not line.endswith(b"\n"):
                        break
                    self.chunks[record["key"]] = record["completions"]
                    good += len(line)
                os.truncate(self.path, good)
                log(f"resuming: {len(self.chunks)} finished chunk(s) kept from {self.path.name}")
            else:
                log(f"resuming: {self.path.name} is of another model; starting it again")
            if good:
                return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, header)

    def add(self, key: str, completions: list[list[str]]) -> None:
        """Append a finished chunk, durably: flushed and fsynced before this returns."""
        append_record(self.path, {"key": key, "completions": completions})
        self.chunks[key] = completions

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def chunks_of(prompts: list, temperature: float, n: int, max_new_tokens: int, stop: tuple[str, ...], *, seed: int,
              chunk_size: int) -> list[Chunk]:
    """The prompts cut into chunks of chunk_size, each seeded from (seed, temperature, start)."""
    out = []
    for start in range(0, len(prompts), chunk_size):
        chunk = prompts[start : start + chunk_size]
        cseed = chunk_seed(seed, temperature, start)
        key = digest([chunk, temperature, n, max_new_tokens, list(stop), cseed])
        out.append(Chunk(key, chunk, temperature, n, max_new_tokens, tuple(stop), cseed))
    return out


def run_chunks(generator, chunks: list[Chunk], partial: PartialFile | None = None,
               safe_point: Callable[[str], None] | None = None, on_batch=None,
               on_restored: Callable[[Chunk], None] | None = None) -> dict[str, list[list[str]]]:
    """The completions of every chunk by key. Chunks found in `partial` are taken from it; the
    others run on the generator, or are dealt over its workers (engine.models.worker_pool) when it
    has them; each is added to `partial` as it finishes, then `safe_point("chunkN")` (N: chunks in
    the file) may stop the stage. on_batch(chunk, prompts, tokens) hears each batch generated now,
    on_restored(chunk) each chunk taken from `partial`."""
    done: dict[str, list[list[str]]] = {}
    todo: dict[str, Chunk] = {}
    for chunk in chunks:
        if partial is not None and chunk.key in partial.chunks:
            done[chunk.key] = partial.chunks[chunk.key]
            if on_restored is not None:
                on_restored(chunk)
        else:
            todo.setdefault(chunk.key, chunk)

    def finished(chunk: Chunk, completions: list[list[str]]) -> None:
        done[chunk.key] = completions
        if partial is not None:
            partial.add(chunk.key, completions)
            if safe_point is not None:
                safe_point(f"chunk{len(partial.chunks)}")

    if hasattr(generator, "run_chunks"):
        generator.run_chunks(list(todo.values()), finished, on_batch)
    else:
        for chunk in todo.values():
            report = None if on_batch is None else lambda prompts, tokens, chunk=chunk: on_batch(chunk, prompts, tokens)
            finished(chunk, chunk.run(generator, report))
    return done
