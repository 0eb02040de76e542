"""One IMM merge step over three checkpoint folders, streamed tensor by tensor into a new folder.

`merge_checkpoints(base, prev, sft, out, alpha, drop_rate, seed)` writes
theta = alpha * base + (1 - alpha) * (prev + scale * DARE_p(sft - prev)) for every tensor (see
`engine.merge.maths` for the maths). Its rules:

- Inputs: safetensors checkpoints, one file or sharded with model.safetensors.index.json. Every
  tensor of each checkpoint must be in the other two with the same shape, and config.json's
  model_type / architectures must agree. The one exception is a tied output head: a checkpoint
  without `lm_head.weight` whose config says tie_word_embeddings stands in its input embedding for
  it. Any other tensor present in only some checkpoints is an error naming it.
- Output: sft's tensor set and sft's dtype per tensor (bf16, fp16 or fp32; maths in fp32), so a
  tied sft gives a tied output. config.json, generation_config.json and the tokenizer files are
  copied from sft, the model this step continues from, whose config matches what is written.
  Tensors go in name order into shards of at most `max_shard_bytes` (model.safetensors when one
  shard is enough, else model-0000i-of-0000N.safetensors plus the index).
- DARE randomness: seeded from (seed, tensor name) and the element's place in the tensor only (on
  the CPU, one generator per piece of CPU_CHUNK elements, seeded from (seed, name, piece index)), so
  the same seed gives the same bytes whatever the input shard layout or the number of threads. The
  CPU and the CUDA kernel draw different masks: a result is reproducible for a given seed and device.
- Everything is checked before anything is written; bad input raises UserError and writes nothing.
  The output is written into a hidden sibling folder, fsynced and renamed into place only when
  complete (engine.durable), so an interrupted merge never leaves a folder at `out`, and a full
  disk is a DiskFullError naming the bytes the merge needs.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import INDEX_NAME, SINGLE_NAME, CheckpointReader, ShardWriter, TensorLocation, tensor_nbytes
from ..durable import write_then_publish
from ..errors import UserError
from .maths import imm_step_into, tensor_seed

ROLES = ("base", "prev", "sft")
MERGEABLE_DTYPES = ("BF16", "F16", "F32")
HEAD = "lm_head.weight"
EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight")
COPIED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                "tokenizer.model", "chat_template.jinja", "chat_template.json")
DEFAULT_SHARD_BYTES = 5 * 2**30
# Elements per piece on the CPU: the fp32 work buffers stay in cache (see benchmarks/merge_bench.py).
CPU_CHUNK = 1 << 18
CUDA_CHUNK = 1 << 26

LayerScale = Callable[[str], float] | Mapping[str, float]


@dataclass(frozen=True)
class TensorPlan:
    name: str
    dtype: str  # output dtype (sft's)
    shape: tuple[int, ...]
    sources: dict[str, TensorLocation]  # role -> where that checkpoint holds it
    scale: float


@dataclass(frozen=True)
class MergeResult:
    out: Path
    tensors: int
    parameters: int
    bytes_written: int
    seconds: float


def merge_checkpoints(
    base: str | Path,
    prev: str | Path,
    sft: str | Path,
    out: str | Path,
    alpha: float,
    drop_rate: float,
    seed: int,
    device: str = "cpu",
    layer_scale: LayerScale | None = None,
    *,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress=None,
) -> MergeResult:
    """Merge one IMM step into the new folder `out` (which must not exist, or be empty).

    alpha in [0, 1] is the weight of base; drop_rate p in [0, 1) is DARE's drop probability;
    seed (an int) seeds the masks; device is "cpu" or "cuda". layer_scale multiplies each tensor's
    DARE'd delta: a callable tensor name -> factor, or a mapping (names it lacks get 1.0; a name
    that is no tensor of sft is an error). None means 1.0 everywhere (IMM). `progress` (a
    ProgressReporter) hears each tensor written.
    """
    started = time.perf_counter()
    check_arguments(alpha, drop_rate, seed, device, max_shard_bytes)
    out = Path(out)
    check_out(out)
    readers = {role: CheckpointReader(folder) for role, folder in zip(ROLES, (base, prev, sft))}
    check_architectures(readers)
    plan = plan_tensors(readers, layer_scale)
    shards = split_shards(plan, max_shard_bytes)

    nbytes = sum(tensor_nbytes(t.dtype, t.shape) for t in plan)

    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        write_shards(tmp, shards, alpha, drop_rate, seed, device, progress)
        copy_side_files(Path(sft), tmp)

    write_then_publish(out, fill, nbytes)  # replaces an empty `out` (checked above)
    return MergeResult(out, len(plan), sum(math.prod(t.shape) for t in plan), nbytes, time.perf_counter() - started)


def check_arguments(alpha, drop_rate, seed, device, max_shard_bytes) -> None:
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise UserError(f"alpha: got {alpha!r}; allowed: a number in [0, 1]")
    if not (isinstance(drop_rate, (int, float)) and 0 <= drop_rate < 1):
        raise UserError(f"drop rate: got {drop_rate!r}; allowed: a number in [0, 1)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed: got {seed!r}; allowed: an integer")
    if device not in ("cpu", "cuda"):
        raise UserError(f"device: got {device!r}; allowed: cpu, cuda")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device: got 'cuda', but torch sees no CUDA device here; allowed: cpu")
    if max_shard_bytes < 1:
        raise UserError(f"max shard bytes: got {max_shard_bytes!r}; allowed: an integer >= 1")


def check_out(out: Path) -> None:
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise UserError(f"out: got {str(out)!r}, which exists and is not an empty folder; "
                        "allowed: a new or empty folder")


def check_architectures(readers: dict[str, CheckpointReader]) -> None:
    for key in ("model_type", "architectures"):
        values = {role: r.config().get(key) for role, r in readers.items()}
        if len({json.dumps(v) for v in values.values() if v is not None}) > 1:
            raise UserError(f"config.json {key}: the checkpoints differ ({values}); allowed: one architecture")


def tied(reader: CheckpointReader) -> bool:
    return bool(reader.config().get("tie_word_embeddings"))


def embedding_name(reader: CheckpointReader) -> str | None:
    found = [n for n in reader.names() if n.endswith(EMBEDDING_SUFFIXES)]
    return found[0] if len(found) == 1 else None


def source_name(reader: CheckpointReader, name: str) -> str | None:
    """The tensor that holds `name` in this checkpoint: itself, or the embedding for a tied head."""
    if name in reader:
        return name
    if name == HEAD and tied(reader):
        return embedding_name(reader)
    return None


def plan_tensors(readers: dict[str, CheckpointReader], layer_scale: LayerScale | None) -> list[TensorPlan]:
    sft = readers["sft"]
    everywhere = sorted(set().union(*(r.names() for r in readers.values())))
    holders = {name: [role for role, r in readers.items() if source_name(r, name)] for name in everywhere}
    partial = [f"{name} (in {', '.join(h)}; not in {', '.join(r for r in ROLES if r not in h)})"
               for name, h in holders.items() if len(h) < len(ROLES)]
    if partial:
        raise UserError(f"tensors in only some checkpoints: {'; '.join(partial[:5])}"
                        f"{' ...' if len(partial) > 5 else ''}; allowed: the same tensors in base, prev and "
                        f"sft (a tied {HEAD} may be left out)")
    names = [n for n in everywhere if not (n == HEAD and tied(sft))]  # a tied sft gives a tied output
    scales = resolve_scales(layer_scale, names)
    plan = []
    for name in names:
        sources = {role: r.location(source_name(r, name) or name) for role, r in readers.items()}  # `everywhere`: found
        shapes = {role: loc.shape for role, loc in sources.items()}
        if len(set(shapes.values())) > 1:
            raise UserError(f"tensor {name}: shapes differ {shapes}; allowed: the same shape in all three")
        bad = {role: loc.dtype for role, loc in sources.items() if loc.dtype not in MERGEABLE_DTYPES}
        if bad:
            raise UserError(f"tensor {name}: dtype {bad}; allowed: {', '.join(MERGEABLE_DTYPES)}")
        plan.append(TensorPlan(name, sources["sft"].dtype, sources["sft"].shape, sources, scales[name]))
    return plan


def resolve_scales(layer_scale: LayerScale | None, names: list[str]) -> dict[str, float]:
    if layer_scale is None:
        return dict.fromkeys(names, 1.0)
    if isinstance(layer_scale, Mapping):
        unknown = sorted(set(layer_scale) - set(names))
        if unknown:
            raise UserError(f"layer scale: names that are no tensor of sft: {', '.join(unknown[:5])}; "
                            "allowed: tensor names of the checkpoint")
        get = lambda n: layer_scale.get(n, 1.0)  # noqa: E731
    else:
        get = layer_scale
    scales = {}
    for name in names:
        try:
            value = float(get(name))
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"layer scale of {name}: {exc}; allowed: a finite number") from exc
        if not math.isfinite(value):
            raise UserError(f"layer scale of {name}: got {value}; allowed: a finite number")
        scales[name] = value
    return scales


def split_shards(plan: list[TensorPlan], max_shard_bytes: int) -> list[list[TensorPlan]]:
    shards: list[list[TensorPlan]] = [[]]
    size = 0
    for t in plan:
        nbytes = tensor_nbytes(t.dtype, t.shape)
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += nbytes
    return shards


def shard_name(i: int, count: int) -> str:
    return SINGLE_NAME if count == 1 else f"model-{i + 1:05d}-of-{count:05d}.safetensors"


def write_shards(folder: Path, shards: list[list[TensorPlan]], alpha: float, p: float, seed: int,
                 device: str, progress=None) -> None:
    largest = max(math.prod(t.shape) for shard in shards for t in shard)
    merger = TensorMerger(alpha, p, seed, device, largest)
    weight_map = {}
    threads = torch.get_num_threads()
    # One intra-op thread: the pieces are small, and torch's thread team, waiting at every op for
    # a thread the OS has lent to another process, ran 10x slower on a busy 2-core machine.
    torch.set_num_threads(1)
    if progress is not None:
        progress.start(sum(len(shard) for shard in shards), "tensors")
    try:
        for i, shard in enumerate(shards):
            fname = shard_name(i, len(shards))
            entries = [(t.name, t.dtype, t.shape) for t in shard]
            with ShardWriter(folder / fname, entries) as writer:
                for t in shard:
                    merger.merge(t, writer)
                    weight_map[t.name] = fname
                    if progress is not None:
                        progress.advance()
    finally:
        torch.set_num_threads(threads)
        merger.close()
    if len(shards) > 1:
        total = sum(tensor_nbytes(t.dtype, t.shape) for shard in shards for t in shard)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_NAME).write_text(json.dumps(index, indent=2))


TORCH_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def read_exactly(fd: int, buffer: torch.Tensor, offset: int) -> None:
    """Fill the uint8 CPU tensor `buffer` from the file at `offset` (plain reads, no memory map)."""
    view = memoryview(buffer.numpy())
    while view:
        got = os.preadv(fd, [view], offset)
        if got == 0:
            raise OSError(f"unexpected end of file at byte {offset}")
        view, offset = view[got:], offset + got


class PieceBuffers:
    """Reused host buffers for one piece: raw bytes of base, prev and sft, the output, fp32 scratch."""

    def __init__(self, elements: int, pinned: bool):
        raw = lambda: torch.empty(elements * 4, dtype=torch.uint8, pin_memory=pinned)  # noqa: E731
        self.inputs = {role: raw() for role in ROLES}
        self.out = raw()
        self.scratch = None if pinned else tuple(torch.empty(elements, dtype=torch.float32) for _ in range(3))


class TensorMerger:
    """Merges tensors piece by piece (a piece: `chunk` consecutive elements of the flat tensor): reads
    the piece of base, prev and sft with plain file reads into reused buffers, computes the IMM step
    and hands the bytes to a ShardWriter in order.

    On the CPU, worker threads (one per core) each take whole pieces, so reading, drawing the mask
    and the maths of one piece run beside those of the next. Each piece draws its mask from its own
    generator, seeded from (seed, tensor name, piece index). On CUDA, pieces go one after the other
    through the fused kernel (or torch ops on the GPU when Triton is missing)."""

    def __init__(self, alpha: float, p: float, seed: int, device: str, largest: int):
        self.alpha, self.p, self.seed, self.device = alpha, p, seed, torch.device(device)
        self.on_cuda = self.device.type == "cuda"
        self.chunk = min(CUDA_CHUNK if self.on_cuda else CPU_CHUNK, largest)
        workers = 1 if self.on_cuda else max(1, min(4, len(os.sched_getaffinity(0))))
        # One more buffer set than workers: the main thread writes one piece while the others compute.
        self.free = [PieceBuffers(self.chunk, self.on_cuda) for _ in range(workers + (workers > 1))]
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None
        if self.on_cuda:
            self.dev_in = {role: torch.empty(self.chunk * 4, dtype=torch.uint8, device=self.device) for role in ROLES}
            self.dev_out = torch.empty(self.chunk * 4, dtype=torch.uint8, device=self.device)
            self.fused = fused_kernel()
            if not self.fused:
                self.dev_scratch = tuple(torch.empty(self.chunk, dtype=torch.float32, device=self.device)
                                         for _ in range(3))
        self.fds: dict[Path, int] = {}

    def _fd(self, path: Path) -> int:
        if path not in self.fds:  # opened by the main thread only (see merge)
            self.fds[path] = os.open(path, os.O_RDONLY)
        return self.fds[path]

    def _read(self, bufs: PieceBuffers, role: str, loc: TensorLocation, start: int, count: int) -> torch.Tensor:
        dtype = TORCH_DTYPES[loc.dtype]
        host = bufs.inputs[role][: count * dtype.itemsize]
        read_exactly(self.fds[loc.path], host, loc.offset + start * dtype.itemsize)
        return host.view(dtype)

    def _piece(self, t: TensorPlan, index: int, bufs: PieceBuffers) -> torch.Tensor:
        """Merge piece `index` of tensor t into bufs.out; returns the bytes to write."""
        start = index * self.chunk
        count = min(self.chunk, math.prod(t.shape) - start)
        out_dtype = TORCH_DTYPES[t.dtype]
        base, prev, sft = (self._read(bufs, role, t.sources[role], start, count) for role in ROLES)
        host_out = bufs.out[: count * out_dtype.itemsize]
        if not self.on_cuda:
            generator = torch.Generator().manual_seed(tensor_seed(self.seed, t.name, index)) if self.p > 0 else None
            imm_step_into(host_out.view(out_dtype), base, prev, sft, self.alpha, self.p, t.scale, generator, bufs.scratch)
            return host_out
        base, prev, sft = (self.dev_in[role][: x.numel() * x.itemsize].copy_(x.view(torch.uint8), non_blocking=True)
                           .view(x.dtype) for role, x in zip(ROLES, (base, prev, sft)))
        out = self.dev_out[: count * out_dtype.itemsize].view(out_dtype)
        if self.fused:  # counter-based draws: one seed per tensor, the piece's place as the counter
            self.fused(out, base, prev, sft, self.alpha, self.p, t.scale, tensor_seed(self.seed, t.name), start)
        else:
            generator = torch.Generator(self.device).manual_seed(tensor_seed(self.seed, t.name, index))
            imm_step_into(out, base, prev, sft, self.alpha, self.p, t.scale, generator, self.dev_scratch)
        return host_out.copy_(out.view(torch.uint8))  # synchronous: the host buffers are reused next

    def merge(self, t: TensorPlan, writer: ShardWriter) -> None:
        for loc in t.sources.values():
            self._fd(loc.path)
        pieces = range(math.ceil(math.prod(t.shape) / self.chunk))
        if self.pool is None:
            for index in pieces:
                writer.write(self._piece(t, index, self.free[0]).numpy())
            return
        pending: deque = deque()
        for index in pieces:
            if not self.free:
                self._write_oldest(pending, writer)
            bufs = self.free.pop()
            pending.append((self.pool.submit(self._piece, t, index, bufs), bufs))
        while pending:
            self._write_oldest(pending, writer)

    def _write_oldest(self, pending: deque, writer: ShardWriter) -> None:
        future, bufs = pending.popleft()
        writer.write(future.result().numpy())
        self.free.append(bufs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def fused_kernel():
    """The fused Triton IMM kernel when Triton is installed (one pass over memory), else None."""
    try:
        from .cuda_kernel import imm_step_fused
    except ImportError:
        return None
    return imm_step_fused


def copy_side_files(sft: Path, folder: Path) -> None:
    for fname in COPIED_FILES:
        if (sft / fname).is_file():
            shutil.copy2(sft / fname, folder / fname)
