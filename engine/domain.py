"""The method's words as types: methods, backends, task domains, sweep trial statuses and the
checkpoint labels of a run (base, sft1, merge1, ...). StrEnums compare equal to their strings, so
stored configs and database rows (plain text) read back unchanged."""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Method(StrEnum):
    IMM = "imm"  # SFT, then merge back with the base
    VANILLA = "vanilla"  # iterated SFT, no merge
    MIXTURE = "mixture"  # mix in a share of earlier kept data
    ACCUMULATE = "accumulate"  # all kept data so far


class GenerationBackend(StrEnum):
    HF = "hf"
    VLLM = "vllm"


class SFTBackend(StrEnum):
    HF = "hf"
    DEEPSPEED = "deepspeed"
    AUTO = "auto"  # deepspeed where several GPUs are visible (engine.config.derived.sft_backend)


BUILTIN_PREFIX = "builtin:"  # model.path "builtin:tiny-arith": the embedded default's model


class ModelSource(StrEnum):
    """Where a model.path's weights come from, which decides who makes its folder."""

    BUILTIN = "builtin"  # builtin:NAME: the shipped copy, installed (or built) by iteration 0
    GGUF = "gguf"  # a .gguf file: converted once into the home's models cache by iteration 0
    FOLDER_OR_HUB = "folder_or_hub"  # a local model folder or a hub id: loaded as it is

    @classmethod
    def of(cls, model_path: str) -> ModelSource:
        if model_path.startswith(BUILTIN_PREFIX):
            return cls.BUILTIN
        return cls.GGUF if model_path.lower().endswith(".gguf") else cls.FOLDER_OR_HUB

    @property
    def built_at_start(self) -> bool:
        """Whether iteration 0's build stage makes the base model's folder."""
        return self is not ModelSource.FOLDER_OR_HUB


class Domain(StrEnum):
    """A task's role in a run: in-domain (trained on) or out-of-domain (evaluated only)."""

    ID = "id"
    OOD = "ood"


class TrialStatus(StrEnum):
    """A merge-lab (sweep) trial's row in the sweeps table."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class CheckpointKind(StrEnum):
    BASE = "base"
    SFT = "sft"
    MERGE = "merge"


_TITLES = {CheckpointKind.SFT: "SFT", CheckpointKind.MERGE: "Merge"}
_LABEL = re.compile(r"(sft|merge)([1-9][0-9]*)|base")


@dataclass(frozen=True, order=True)
class Checkpoint:
    """A checkpoint of a run: the base (iteration 0), SFT_t or Merge_t. `str` is the label the
    metrics table and the files use (`base`, `sft2`, `merge2`); `parse` reads it back."""

    kind: CheckpointKind
    iteration: int = 0

    def __str__(self) -> str:
        return str(self.kind) if self.kind is CheckpointKind.BASE else f"{self.kind}{self.iteration}"

    @classmethod
    def parse(cls, label: str) -> Checkpoint:
        m = _LABEL.fullmatch(label)
        if m is None:
            raise ValueError(f"not a checkpoint label: {label!r} (base, sftN or mergeN)")
        return cls(CheckpointKind.BASE) if label == "base" else cls(CheckpointKind(m.group(1)), int(m.group(2)))

    @property
    def title(self) -> str:
        """How tables name it: Base, SFT2, Merge2."""
        return "Base" if self.kind is CheckpointKind.BASE else f"{_TITLES[self.kind]}{self.iteration}"

    @property
    def sort_key(self) -> tuple[int, int]:
        """Base, SFT1, Merge1, SFT2, ...: the order of the method's loop."""
        return self.iteration, (-1 if self.kind is CheckpointKind.BASE else 0 if self.kind is CheckpointKind.SFT else 1)

    @classmethod
    def sft(cls, iteration: int) -> Checkpoint:
        return cls(CheckpointKind.SFT, iteration)

    @classmethod
    def merge(cls, iteration: int) -> Checkpoint:
        return cls(CheckpointKind.MERGE, iteration)
