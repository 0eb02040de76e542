"""The DeepSpeed runner's command line (`python -m deepspeed.launcher.runner`), which starts a
module once per GPU on this machine or, with a hostfile, over several: the SFT backend's workers
(engine.train.deepspeed_launcher) and generation's rank workers on several machines
(engine.models.host_workers) both go through it."""
from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

from ..cpu_threads import with_wait_policy

HOSTFILE = "hostfile"


def hostfile_text(hosts: list[str]) -> str:
    """A DeepSpeed hostfile of sft.hosts: one "HOST slots=N" line per machine."""
    return "".join(" ".join(h.split()) + "\n" for h in hosts)


def host_gpus(hosts: list[str], num_gpus: int) -> int:
    """GPUs over all of sft.hosts: each host's slots, capped at num_gpus per host when set."""
    slots = [int(h.split("slots=")[1]) for h in hosts]
    return sum(min(n, num_gpus) if num_gpus else n for n in slots)


def launch_command(job: Path, num_gpus: int, visible: str | None, port: int, hosts: list[str] | tuple[()] = (),
                   module: str = "engine.train.deepspeed_worker") -> list[str]:
    """The launcher's argv, starting `module` (the SFT worker; engine.models.rank_worker for
    generation over several machines) once per GPU. num_gpus 0 = all visible GPUs; with CUDA_VISIBLE_DEVICES set, the
    runner ignores it whenever --num_gpus is given, so the first N visible ids are named instead.
    With sft.hosts the runner reads the hostfile beside the job (write_job writes it) and starts
    the ranks of the other machines over ssh (pdsh, its default); the first host is the master,
    and num_gpus caps the GPUs used on each host."""
    cmd = [sys.executable, "-u", "-m", "deepspeed.launcher.runner", "--master_port", str(port)]
    if hosts:
        cmd += ["--hostfile", str(Path(job).parent / HOSTFILE), "--master_addr", hosts[0].split()[0]]
        if num_gpus > 0:
            cmd += ["--num_gpus", str(num_gpus)]
    elif num_gpus > 0:
        if visible:
            ids = [v.strip() for v in visible.split(",") if v.strip()]
            cmd += ["--include", "localhost:" + ",".join(ids[:num_gpus])]
        else:
            cmd += ["--num_gpus", str(num_gpus)]
    return cmd + ["--module", module, "--job", str(job)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(base: dict | None = None) -> dict:
    """The launcher's environment: unbuffered output, the engine package importable, the short
    OpenMP wait (engine.cpu_threads), and TORCH_CUDA_ARCH_LIST without the 'a' suffix (9.0a breaks
    DeepSpeed's op builder)."""
    env = with_wait_policy(dict(os.environ if base is None else base))
    env["PYTHONUNBUFFERED"] = "1"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    arch = env.get("TORCH_CUDA_ARCH_LIST")
    if arch:
        env["TORCH_CUDA_ARCH_LIST"] = re.sub(r"(\d+\.\d+)a\b", r"\1", arch)
    return env
