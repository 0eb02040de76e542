"""What a stage gets (StageContext) and gives back (StageResult), and the seed of each stage."""
from __future__ import annotations

import hashlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import RunConfig
from ..errors import StopRequested
from ..runstate.paths import RunPaths
from ..runstate.progress import ProgressReporter, null_progress
from ..runstate.steps import StepRecorder, null_steps
from ..domain import BUILTIN_PREFIX, Domain, Method, ModelSource


def stage_seed(seed: int, iteration: int, stage: str) -> int:
    """The seed of one stage of one iteration: a resumed run draws what an uninterrupted one drew."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{iteration}:{stage}".encode()).digest()[:4], "little")


def hold_for_test(paths: RunPaths, t: int, stage: str, when: str) -> None:
    """Fault-injection point for the kill/resume tests: with IMM_TEST_HOLD="T:STAGE:WHEN" the
    engine announces itself in a HOLDING file and waits there until the test kills it or deletes
    the file."""
    if os.environ.get("IMM_TEST_HOLD") == f"{t}:{stage}:{when}":
        marker = paths.root / "HOLDING"
        marker.write_text(f"{os.getpid()}\n")
        while marker.exists():
            time.sleep(0.05)


@dataclass(frozen=True)
class StageResult:
    """What a stage made: its artifact (file or folder; None when it keeps none), a summary for the
    stage row and the log, and rows for SQLite tables (metrics, layer_stats, verdicts)."""

    artifact: Path | str | None = None
    info: dict = field(default_factory=dict)
    rows: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class StageContext:
    """One run as a stage sees it, with the seed of the stage at hand, its progress reporter and
    step recorder."""

    cfg: RunConfig
    run_id: str
    paths: RunPaths
    home: Path
    seed: int
    log: Callable[[str], None]
    progress: ProgressReporter = field(default_factory=null_progress)
    steps: StepRecorder = field(default_factory=null_steps)  # SFT's optimizer steps (the curves)
    # Set by the driver for the stage at hand: whether a stop was asked for (SIGTERM, STOP file),
    # and its test hold point (hold_for_test bound to the run, iteration and stage).
    stop_requested: Callable[[], bool] = lambda: False
    hold: Callable[[str], None] = lambda when: None

    def safe_point(self, when: str) -> None:
        """What the stage finished so far is saved: the bar and the curves show it now (not up
        to a coalescing interval later: a stage that stops here would leave them behind the work
        its resume starts from); wait here if a test says so, and raise StopRequested if a stop was
        asked for."""
        self.progress.flush()
        self.steps.flush()
        self.hold(when)
        if self.stop_requested():
            raise StopRequested(f"stop requested; stopped at {when}")

    # ------------------------------------------------------------ which model
    @property
    def base_path(self) -> str:
        source = ModelSource.of(self.cfg.model.path)
        if source is ModelSource.BUILTIN:
            from ..train.builtin import builtin_folder

            return str(builtin_folder(self.home, self.cfg.model.path.removeprefix(BUILTIN_PREFIX)))
        if source is ModelSource.GGUF:
            from ..models.gguf import gguf_folder

            return str(gguf_folder(self.home, self.cfg.model.path))
        return self.cfg.model.path

    def prev_path(self, t: int) -> str:
        """The model iteration t starts from: the base, then Merge_{t-1} (imm) or SFT_{t-1}."""
        if t == 1:
            return self.base_path
        return str(self.paths.merged(t - 1) if self.cfg.method == Method.IMM else self.paths.sft(t - 1))

    def sft_init_path(self, t: int) -> str:
        """The model SFT_t is fine-tuned from: prev_path(t), or the base for vanilla_from = "base"
        (STaR's restart; the samples still come from prev_path(t))."""
        return self.base_path if self.cfg.vanilla_from == "base" else self.prev_path(t)

    # ------------------------------------------------------------ where and how it runs
    def device_and_dtype(self):
        from ..models.loading import resolve_device, torch_dtype

        device = resolve_device(self.cfg.device)
        return device, torch_dtype(self.cfg.model.dtype, device)

    def generator(self, path: str, batch_size: int, workers: int | str = 1, dtype_name: str | None = None,
                  trust_remote_code: bool | None = None):
        """A generation backend (cfg.generation.backend) over the checkpoint at `path`, in this
        process for one worker, else a pool of worker processes (engine.models.worker_pool), or
        with sft.hosts one rank per GPU of every host (engine.models.host_workers); close() it. `.devices` names where it runs. Its code runs as model.trust_remote_code says,
        unless the caller (the teacher) says."""
        from ..models.backends import make_generator
        from ..models.loading import torch_dtype

        device, dtype = self.device_and_dtype()
        if dtype_name:
            dtype = torch_dtype(dtype_name, device)
        trust = self.cfg.model.trust_remote_code if trust_remote_code is None else trust_remote_code
        g, hosts = self.cfg.generation, self.cfg.sft.hosts
        if hosts:  # several machines: one rank per GPU of every host (engine.models.host_workers)
            from ..models.host_workers import HostPool, deepspeed_command
            from ..models.ds_runner import hostfile_text

            spec = {"path": str(path), "backend": g.backend, "device": "cuda", "dtype": str(dtype).removeprefix("torch."),
                    "batch_size": batch_size, "trust_remote_code": trust, "tensor_parallel": g.vllm_tensor_parallel,
                    "threads": 1}
            return HostPool(deepspeed_command(hosts, self.cfg.sft.num_gpus), self.worker_labels(workers), spec,
                            self.paths.root, hostfile_text(hosts), self.log)
        places = self.worker_slots(workers)
        if len(places) == 1:
            gen = make_generator(g.backend, path, device, dtype, batch_size, trust, g.vllm_tensor_parallel)
            gen.devices = [places[0].label]
            return gen
        import torch

        from ..models.placement import threads_per_worker
        from ..models.worker_pool import WorkerPool

        threads = threads_per_worker(torch.get_num_threads(), len(places))
        return WorkerPool(places, threads, g.backend, path, str(dtype).removeprefix("torch."), batch_size, trust, self.log)

    def worker_labels(self, workers: int | str) -> list[str]:
        """Where a generation or evaluation stage's workers run: a device each (the stage info)."""
        if self.cfg.sft.hosts:
            from ..models.host_workers import host_labels

            return host_labels(self.cfg.sft.hosts, self.cfg.sft.num_gpus, "cuda")
        return [slot.label for slot in self.worker_slots(workers)]

    def worker_slots(self, workers: int | str) -> list:
        """The worker places of a generation or evaluation stage (engine.models.placement)."""
        from ..models.placement import slots, visible_gpus

        device, _ = self.device_and_dtype()
        return slots(workers, device, visible_gpus() if device == "cuda" else [], self.cfg.generation.vllm_tensor_parallel)

    # ------------------------------------------------------------ data
    def tasks(self) -> dict:
        """name -> (Task, "id" | "ood"), the in-domain task first."""
        from ..tasks import get_task

        specs = self.cfg.tasks.specs
        return {name: (get_task(name, specs.get(name)), Domain.ID if i == 0 else Domain.OOD) for i, name in enumerate(self.cfg.all_tasks())}

    def in_domain_task(self):
        return self.tasks()[self.cfg.tasks.id][0]

    def train_examples(self, task) -> list:
        """The in-domain questions of every iteration (a fixed sample of train_size, if set)."""
        examples = task.load(task.train_split)
        size = self.cfg.tasks.train_size
        if size and size < len(examples):
            examples = random.Random(f"{self.cfg.seed}:train").sample(examples, size)
        return examples
