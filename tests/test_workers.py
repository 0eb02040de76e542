"""Generation and evaluation over several worker processes (generation.workers, eval.workers;
engine.models.worker_pool), on the CPU: two workers give the one-worker run byte for byte; a
killed worker fails the stage naming its device, with the resume command, and leaves nothing
running; a killed engine takes its workers with it, and the resumed run keeps every finished
chunk and is the one-worker run byte for byte."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from conftest import FAST, TINY_PRESET, imm
from conftest import wait_until
from test_loop import assert_same_run, run_id_of, show_json, start_engine

# one torch thread for the single worker and for each of two (threads split over CPU workers)
PINNED = FAST + ["threads=1", "eval.batch_size=8", "generation.batch_size=16"]


def sets(*extra: str) -> list[str]:
    return sum((["--set", o] for o in PINNED + list(extra)), [])


def stage_info(home: Path, run_id: str, t: int, stage: str) -> dict:
    return next(s["info"] for s in show_json(run_id, home)["stages"] if (s["iteration"], s["stage"]) == (t, stage))


def worker_pids(run_dir: Path) -> list[int]:
    """The pids of the generation workers the engine log names last."""
    lines = [line for line in (run_dir / "engine.log").read_text().splitlines() if "generation workers: " in line]
    return [int(part.split()[1]) for part in lines[-1].split("generation workers: ")[1].split(" (")[0].split(", ")]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie has ended; only its parent's wait is missing
            return f.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:  # reaped meanwhile
        return True


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, base_models):
    home = tmp_path_factory.mktemp("one-worker")
    (home / "models").symlink_to(base_models)
    proc = imm("run", str(TINY_PRESET), *sets("generation.workers=1", "eval.workers=1"), home=home, check=True)
    return home, run_id_of(proc)


@pytest.mark.fault
def test_a_killed_worker_fails_the_stage_naming_its_device_and_nothing_is_left_running(home):
    engine = start_engine("run", str(TINY_PRESET), *sets("eval.workers=2"), home=home, hold="0:eval:base-chunk1")
    run_id = engine.stdout.readline().split()[1]
    run_dir = home / "runs" / run_id
    wait_until((run_dir / "HOLDING").exists, what="the base eval's first chunk")
    pids = worker_pids(run_dir)
    os.kill(pids[1], signal.SIGKILL)
    (run_dir / "HOLDING").unlink()
    assert engine.wait(timeout=120) == 1
    stderr = engine.stderr.read()
    run = show_json(run_id, home)
    assert run["status"] == "failed"
    error = next(s["error"] for s in run["stages"] if s["stage"] == "eval")
    assert "generation worker on cpu failed: its process ended (exit code -9)" in error
    assert f"imm resume {run_id}" in error and "--set eval.workers=N" in error and f"imm resume {run_id}" in stderr
    wait_until(lambda: all(gone(pid) for pid in pids), timeout=60, what="the other worker to end")

    resumed = imm("resume", run_id, home=home, check=True)
    assert show_json(run_id, home)["status"] == "done", resumed.stderr
    assert "finished chunk(s) kept from eval_base.jsonl.partial" in (run_dir / "engine.log").read_text()


@pytest.mark.fault
def test_a_killed_engine_takes_its_workers_along_and_the_resumed_two_worker_run_is_the_one_worker_run(home, one_worker):
    """Two workers, the engine killed after two generation chunks, resumed: every finished chunk
    is kept, and the run is the one-worker run byte for byte (samples, kept data, eval completions,
    weights, metrics): with the whole run on two workers this is also the workers' equivalence."""
    engine = start_engine("run", str(TINY_PRESET), *sets("generation.workers=2", "eval.workers=2"), home=home,
                          hold="1:generate:chunk2")
    run_id = engine.stdout.readline().split()[1]
    run_dir = home / "runs" / run_id
    wait_until((run_dir / "HOLDING").exists, what="the second finished generation chunk")
    pids = worker_pids(run_dir)
    engine.kill()
    engine.wait()
    wait_until(lambda: all(gone(pid) for pid in pids), timeout=60, what="the workers to end with their engine")
    partial = run_dir / "iter_1" / "samples.jsonl.partial"
    assert len(partial.read_text().splitlines()) == 1 + 2  # header + the two finished chunks
    (run_dir / "HOLDING").unlink()
    imm("resume", run_id, home=home, check=True)
    assert "2 finished chunk(s) kept from samples.jsonl.partial" in (run_dir / "engine.log").read_text()
    assert_same_run(home, run_id, one_worker)
    assert stage_info(home, run_id, 1, "generate")["workers"] == ["cpu", "cpu"]
    assert stage_info(home, run_id, 1, "eval")["workers"] == ["cpu", "cpu"]
    assert stage_info(*one_worker, 1, "generate")["workers"] == ["cpu"]
    assert "(1 torch thread(s) each)" in (run_dir / "engine.log").read_text()
    assert all(gone(pid) for pid in worker_pids(run_dir))


def test_workers_setting_is_checked(home):
    bad = imm("run", str(TINY_PRESET), "--set", "eval.workers=0", "--dry-run", home=home)
    assert bad.returncode == 2 and "eval.workers: got 0" in bad.stderr and '"auto"' in bad.stderr
    bad = imm("run", str(TINY_PRESET), "--set", "generation.vllm_tensor_parallel=2", "--dry-run", home=home)
    assert bad.returncode == 2 and "generation.vllm_tensor_parallel" in bad.stderr


def test_over_several_machines_the_dry_run_shows_both_launches_and_writes_nothing(home):
    hosts = 'sft.hosts=["gpu-a slots=2", "gpu-b slots=1"]'
    out = imm("run", str(TINY_PRESET), "--set", "sft.backend=auto", "--set", hosts, "--dry-run", home=home, check=True).stdout
    ranks = "3 ranks on gpu-a:cuda:0, gpu-a:cuda:1, gpu-b:cuda:0"
    hostfile = "JOB/hostfile: gpu-a slots=2; gpu-b slots=1"
    launch = ("python -u -m deepspeed.launcher.runner --master_port PORT --hostfile JOB/hostfile --master_addr gpu-a "
              "--module {} --job JOB/job.json; " + hostfile)
    generate, evaluate = (line for line in out.splitlines() if line.startswith("  workers (sft.hosts)"))
    assert generate == evaluate == f"  workers (sft.hosts): {ranks}; launch: " + launch.format("engine.models.rank_worker")
    assert "  launch: " + launch.format("engine.train.deepspeed_worker") in out.splitlines()
    assert "backend auto (deepspeed here), ZeRO stage 3" in out
    assert sorted(p.name for p in home.iterdir()) == ["models"]


def test_ranks_started_by_a_launcher_give_the_in_process_output(tmp_path, base_models):
    """The several-machines path on one machine: torchrun starts two rank workers over the job
    file (as DeepSpeed's launcher does over the hostfile); their chunks equal the in-process ones."""
    import sys

    import torch

    from engine.models.generation import HFGenerator
    from engine.models.host_workers import HostPool
    from engine.stages.resumable import PartialFile, chunks_of, run_chunks
    from engine.tasks import get_task

    torch.set_num_threads(1)
    task = get_task("arith_add3")
    prompts = [task.prompt(e, []) for e in task.load("test")[:40]]
    chunks = [c for t in (0.5, 1.0) for c in chunks_of(prompts, t, 2, 24, task.stop_sequences, seed=3, chunk_size=8)]
    model = base_models / "tiny-arith-v1"
    want = run_chunks(HFGenerator(model, "cpu", torch.float32, batch_size=8), chunks)

    def torchrun(job):
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "engine.models.rank_worker", "--job", str(job)]

    spec = {"path": str(model), "backend": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8,
            "trust_remote_code": False, "tensor_parallel": 1, "threads": 1}
    logs, reported = [], []
    pool = HostPool(torchrun, ["cpu", "cpu"], spec, tmp_path, log=logs.append)
    partial = PartialFile(tmp_path / "samples.jsonl", "m", logs.append)
    got = run_chunks(pool, chunks, partial, on_batch=lambda chunk, prompts, tokens: reported.append((prompts, tokens)))
    assert got == want and len(partial.chunks) == len(chunks) == 10
    assert sum(p for p, _ in reported) == 80 and all(t > 0 for _, t in reported)
    assert "engine.models.rank_worker" in logs[0] and not list(tmp_path.glob(".workers-*"))
