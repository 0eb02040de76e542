"""The SFT curves and the system history in the engine: the step recorder's batches and flushes,
the store's one-row-a-step and bounded samples, the sampling thread on a real database, the
gradient norm an optimizer step reports, and a real tiny SFT whose every step lands in SQLite
with what the loop saw."""
from __future__ import annotations

import json
import math
import sqlite3
import time

import pytest
import torch

from engine import api
from engine.runstate.machine import GpuReading, MachineSample
from engine.runstate.steps import StepRecorder
from engine.runstate.store import Store
from engine.runstate.system_history import SystemHistory
from engine.train.schedule import optimizer_step

RUN = "run-1"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def store_with_run(home) -> Store:
    store = Store(home)
    store.create_run({"id": RUN, "name": "r", "preset": "p", "method": "imm", "status": "running", "config": "{}",
                      "run_dir": "runs/run-1"}, [(1, "sft")])
    return store


def test_the_recorder_writes_in_batches_of_steps_or_seconds_and_flushes_the_rest():
    batches, clock = [], Clock()
    rec = StepRecorder(batches.append, batch_steps=3, batch_s=10.0, clock=clock)
    rec.begin(0)
    for step in range(1, 8):
        clock.now += 1.0
        rec.record(step, torch.tensor(1.0 / step), 1e-3, torch.tensor(2.0), 100)
    assert [[r["step"] for r in b] for b in batches] == [[1, 2, 3], [4, 5, 6]]
    clock.now += 20.0
    rec.record(8, 0.5, 1e-3, 1.0, 100)  # 20 s since the last write: written at once
    assert [r["step"] for r in batches[-1]] == [7, 8]
    rec.flush()
    assert len(batches) == 3  # nothing pending: no empty batch
    row = batches[0][1]
    assert row["loss"] == pytest.approx(0.5) and isinstance(row["loss"], float) and row["grad_norm"] == 2.0
    assert row["tokens_per_s"] == pytest.approx(100.0) and batches[-1][-1]["tokens_per_s"] == pytest.approx(5.0)


def test_a_step_stored_again_replaces_its_row_and_begin_trims_the_steps_after_a_resume(tmp_path):
    store = store_with_run(tmp_path)
    rec = StepRecorder(lambda rows: store.record_sft_steps(RUN, 1, rows), lambda after: store.trim_sft_steps(RUN, 1, after))
    rec.begin(0)
    for step in range(1, 6):
        rec.record(step, 1.0, 1e-3, 1.0, 10)
    rec.flush()
    rec.begin(3)  # resumed from the checkpoint at step 3: steps 4 and 5 will run again
    assert [p.step for p in api.sft_steps(RUN, home=tmp_path)] == [1, 2, 3]
    for step in (4, 5):
        rec.record(step, 0.5, 1e-3, 1.0, 10)
    rec.record(3, 0.25, 1e-3, 1.0, 10)  # a step stored twice keeps one row, the last
    rec.flush()
    points = api.sft_steps(RUN, home=tmp_path)
    assert [(p.step, p.loss) for p in points] == [(1, 1.0), (2, 1.0), (3, 0.25), (4, 0.5), (5, 0.5)]
    last = max(p.seq for p in points)
    rec.record(6, 0.1, 1e-3, 1.0, 10)
    rec.flush()
    assert [p.step for p in api.sft_steps(RUN, home=tmp_path, after=last)] == [6]  # a live reader gets only the new


def test_thinning_keeps_every_other_sample_of_the_stage_only(tmp_path):
    store = store_with_run(tmp_path)
    rows = [{"ts": float(i), "cpu_pct": float(i), "mem_used": 1, "mem_total": 2, "gpus": "[]"} for i in range(10)]
    store.add_system_samples(RUN, 1, "sft", rows)
    store.add_system_samples(RUN, 1, "merge", rows[:3])
    store.thin_system_samples(RUN, 1, "sft")
    kept = [(p.stage, p.ts) for p in api.system_history(RUN, home=tmp_path)]
    assert [ts for stage, ts in kept if stage == "sft"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [ts for stage, ts in kept if stage == "merge"] == [0.0, 1.0, 2.0]


class FixedSampler:
    """The machine as a test wants it: CPU 40%, 3 of 8 GiB, one GPU at 75%; counts its samples."""

    def __init__(self):
        self.samples = 0

    def cores(self):
        return (40.0, 40.0)

    def sample(self):
        self.samples += 1
        return MachineSample((30.0, 50.0), 3 << 30, 8 << 30, (GpuReading(0, "GPU [x]", 75.0, 1 << 30, 4 << 30),))


def test_the_history_thread_stores_samples_during_a_stage_and_stays_bounded(tmp_path):
    store_with_run(tmp_path)
    sampler = FixedSampler()
    history = SystemHistory(tmp_path, RUN, Store.another_connection, interval=0.001, max_rows=20,
                            sampler_factory=lambda: sampler)
    with history.during(1, "sft"):
        deadline = time.monotonic() + 60
        while sampler.samples < 120 and time.monotonic() < deadline:
            time.sleep(0.01)  # polls the condition: the thread samples every millisecond
    points = api.system_history(RUN, home=tmp_path)
    assert sampler.samples >= 120
    assert 0 < len(points) < 20 + 5  # thinned each time it reached 20 (plus one batch)
    assert all(p.iteration == 1 and p.stage == "sft" for p in points)
    p = points[-1]
    assert (p.cpu_pct, p.mem_used, p.mem_pct) == (40.0, 3 << 30, 37.5)
    assert p.gpus == (GpuReading(0, "GPU [x]", 75.0, 1 << 30, 4 << 30),)
    assert [x.ts for x in points] == sorted(x.ts for x in points)


def test_a_history_that_cannot_sample_warns_once_and_the_stage_goes_on(tmp_path):
    store_with_run(tmp_path)
    logs = []

    def no_proc():
        raise FileNotFoundError("/proc/stat")

    history = SystemHistory(tmp_path, RUN, Store.another_connection, logs.append, sampler_factory=no_proc)
    with history.during(1, "sft"):
        pass
    with history.during(1, "merge"):
        pass
    assert logs == ["system history: not recorded (FileNotFoundError: /proc/stat)"]
    assert api.system_history(RUN, home=tmp_path) == []


@pytest.mark.parametrize("max_grad_norm", [0.0, 0.5])
def test_an_optimizer_step_returns_the_gradient_norm_before_clipping(max_grad_norm):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model(torch.randn(5, 4)).pow(2).sum().backward()
    expected = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    assert float(optimizer_step(model, opt, sched, max_grad_norm)) == pytest.approx(expected, rel=1e-6)


def test_a_real_sft_stores_every_step_with_the_loss_lr_and_norm_the_loop_used(tmp_path, base_models):
    from engine.config import SFTConfig
    from engine.tasks import get_task
    from engine.train.schedule import lr_factor
    from engine.train.sft import train

    store = store_with_run(tmp_path)
    task = get_task("arith_add3")
    pairs = [(task.prompt(e, []), e.rationale) for e in task.load("train")[:24]]
    cfg = SFTConfig(epochs=2, lr=1e-3, batch_size=4, grad_accum=1, warmup=0.2, max_length=96, max_grad_norm=1.0)
    rec = StepRecorder(lambda rows: store.record_sft_steps(RUN, 1, rows), lambda after: store.trim_sft_steps(RUN, 1, after))
    info = train(base_models / "tiny-arith-v1", pairs, cfg, tmp_path / "out", "cpu", torch.float32, 3, lambda _: None,
                 None, recorder=rec)
    rec.flush()
    points = api.sft_steps(RUN, home=tmp_path)
    total = info["optimizer_steps"]
    assert [p.step for p in points] == list(range(1, total + 1)) and total == 12
    assert points[-1].loss == pytest.approx(info["final_loss"])
    assert [p.lr for p in points] == pytest.approx([1e-3 * lr_factor(s, total, 2, "cosine") for s in range(total)])
    assert all(p.grad_norm > 0 and p.tokens > 0 and p.tokens_per_s > 0 for p in points)
    with sqlite3.connect(tmp_path / "imm.db") as db:  # one row a step
        assert db.execute("SELECT count(*), count(DISTINCT step) FROM sft_steps").fetchone() == (total, total)
    exported = api.export(RUN, "csv", "curves", home=tmp_path).splitlines()
    assert exported[0] == "iteration,step,loss,lr,grad_norm,tokens,tokens_per_s,ts" and len(exported) == 1 + total
    assert len(json.loads(api.export(RUN, "json", home=tmp_path))["sft_steps"]) == total
