"""The API's read models: frozen dataclasses with plain Python values (no JSON strings inside)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..results_table import adoption_text, checkpoint_label, checkpoint_order, result_order  # noqa: F401 - re-exported by the API
from ..runstate.machine import GpuReading
from ..domain import Checkpoint, Domain, Method, TrialStatus
from ..runstate.names import PEAK_GPU_KEY, RunStatus, Stage, StageStatus


@dataclass(frozen=True)
class RunSummary:
    """One line of the runs table. best_id: the highest in-domain pass@1 of any checkpoint;
    best_ood: the highest mean out-of-domain pass@1 of any checkpoint (both in %)."""

    id: str
    name: str
    preset: str
    method: Method
    model: str
    status: RunStatus  # "interrupted" when stored as running but the engine is gone, "missing" when
    # the run's folder is gone
    iteration: int | None  # where the run is (running stage, else the next pending one); None when all done
    stage: str | None
    stages_done: int
    stages_total: int
    best_id: float | None
    best_ood: float | None
    verdict: str | None  # the latest superficiality verdict (diagnostics), if any
    started: float  # creation time (epoch seconds)
    elapsed: float  # seconds spent in stages (a running stage counts up to now)
    error: str | None
    pid: int | None
    sweep_running: bool
    run_dir: Path
    # The roles (model, teacher) whose checkpoints' own Python code the run executes
    # (trust_remote_code on in the preset); () for a run that runs none.
    remote_code: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageRow:
    iteration: int
    stage: Stage
    status: StageStatus
    started: float | None
    ended: float | None
    error: str | None
    artifact: str | None
    info: dict = field(default_factory=dict)
    spent: float = 0.0  # seconds its earlier attempts took (stopped or killed, then resumed)

    @property
    def seconds(self) -> float | None:
        """The stage's time over all its attempts (None until it ends)."""
        return None if self.started is None or self.ended is None else self.spent + self.ended - self.started

    @property
    def peak_gpu_gib(self) -> float | None:
        """The stage's peak GPU memory in GiB; None where it ran without a GPU."""
        return self.info.get(PEAK_GPU_KEY)


@dataclass(frozen=True)
class Adoption:
    """Merge_t is sweep trial `trial`, adopted after the run merged: its alpha and p (and mask seed)
    are the trial's, not the config's merge.alpha / merge.drop_rate."""

    iteration: int
    trial: int
    alpha: float
    drop_rate: float
    seed: int | None

    @property
    def checkpoint(self) -> str:
        return str(Checkpoint.merge(self.iteration))

    @property
    def text(self) -> str:
        """adopted trial 7 (alpha 0.2, p 0.3)"""
        return adoption_text({"trial": self.trial, "alpha": self.alpha, "drop_rate": self.drop_rate})


@dataclass(frozen=True)
class RunDetail:
    summary: RunSummary
    config: dict  # the resolved config
    stages: tuple[StageRow, ...]
    log_path: Path
    adoptions: tuple[Adoption, ...] = ()  # the merges that are adopted sweep trials


@dataclass(frozen=True)
class ResultRow:
    checkpoint: str  # base, sft1, merge1, ..., or "trial"
    iteration: int
    task: str
    domain: Domain
    metric: str  # pass@k
    value: float  # %
    n: int  # questions
    adopted: Adoption | None = None  # set when the checkpoint is an adopted sweep trial

    @property
    def label(self) -> str:
        return checkpoint_label(self.checkpoint)


@dataclass(frozen=True)
class ModuleStat:
    importance: float | None
    weight_change: float | None


@dataclass(frozen=True)
class LayerStat:
    """Layer n of iteration t: importance of the model the iteration started from, and the weight
    change from it to `checkpoint` (sftT or mergeT); *_pct are shares of the layers' total."""

    iteration: int
    checkpoint: str
    layer: int
    importance: float | None
    importance_pct: float | None
    weight_change: float | None
    weight_change_pct: float | None
    modules: dict[str, ModuleStat] = field(default_factory=dict)  # attention / MLP modules of the layer


@dataclass(frozen=True)
class Verdict:
    iteration: int
    checkpoint: str
    spearman: float | None
    verdict: str  # superficial | aligned | ...
    threshold: float
    top_importance: tuple[int, ...]
    top_change: tuple[int, ...]
    top_overlap: tuple[int, ...]


@dataclass(frozen=True)
class Trial:
    """One sweep trial: iteration t re-merged with (alpha, drop_rate, seed) and evaluated."""

    id: int
    iteration: int
    alpha: float
    drop_rate: float
    seed: int
    subset: int  # questions per task (0 = the run's eval set)
    status: TrialStatus
    results: tuple[ResultRow, ...]
    seconds: float | None
    adopted: bool
    weights: str | None  # the kept merged checkpoint, if any
    error: str | None
    created: float


@dataclass(frozen=True)
class Progress:
    """Progress inside the running stage: step of total in `unit`, the rate (units/s of this
    attempt's work: steps restored by a resumed stage are not counted) and ETA; `label` names what
    the stage works on now (the checkpoint an eval answers with), None when it is one thing."""

    iteration: int
    stage: str
    step: int
    total: int
    unit: str  # samples | steps | questions | tensors | examples
    rate: float | None
    tokens_per_s: float | None
    loss: float | None
    started: float | None
    updated: float
    label: str | None = None

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate."""
        if not self.rate or self.total <= 0:
            return None
        return max(self.total - self.step, 0) / self.rate

    @property
    def fraction(self) -> float:
        return min(self.step / self.total, 1.0) if self.total > 0 else 0.0


@dataclass(frozen=True)
class StepPoint:
    """One optimizer step of iteration t's SFT: the curves. seq grows with every stored row (a
    reader asks for the rows after the last seq it has)."""

    iteration: int
    step: int
    loss: float | None
    lr: float | None
    grad_norm: float | None
    tokens: int | None
    tokens_per_s: float | None
    ts: float
    seq: int = 0


@dataclass(frozen=True)
class SystemPoint:
    """The machine at `ts`, while stage `stage` of iteration t ran: CPU % (all cores, over the
    sampling interval), memory, and each GPU NVML saw (none without NVIDIA GPUs)."""

    iteration: int
    stage: str
    ts: float
    cpu_pct: float
    mem_used: int
    mem_total: int
    gpus: tuple[GpuReading, ...] = ()

    @property
    def mem_pct(self) -> float:
        return 100.0 * self.mem_used / self.mem_total if self.mem_total else 0.0


@dataclass(frozen=True)
class Sample:
    """One generated (or evaluated) completion with its grade."""

    id: str
    question: str
    completion: str
    gold: str
    extracted: str | None
    correct: bool | None
    kept: bool | None
    temperature: float | None
    task: str


@dataclass(frozen=True)
class FieldError:
    """One config field the engine refuses: its path (e.g. merge.alpha), the value and what is allowed."""

    field: str
    value: object
    allowed: str

    @property
    def message(self) -> str:
        return f"{self.field}: got {self.value!r}; allowed: {self.allowed}"


@dataclass(frozen=True)
class PresetInfo:
    name: str
    path: Path
    source: str  # bundled | user
    description: str


@dataclass(frozen=True)
class Started:
    """A detached engine process the API started (run, resume, sweep worker or adopt)."""

    run_id: str
    pid: int | None  # None when it ran in the foreground
    log_path: Path
    status: str  # the run's status when the call returned


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunSummary, ...]
    results: dict[str, tuple[ResultRow, ...]]  # run id -> its results
    config_diff: dict[str, tuple[object, ...]]  # dotted key -> value per run, only keys that differ
