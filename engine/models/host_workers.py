"""Generation and evaluation over several machines (sft.hosts): the stage's chunks go to one
engine.models.rank_worker per GPU of every host, started by DeepSpeed's launcher over the same
hostfile the SFT stage writes (ssh to the other hosts through pdsh). The job and the ranks' results
live in the run's folder, so the home must be on a file system every host shares (README,
"Scale-out"). The engine process reads each rank's finished chunks as they land and passes them on
as the local worker pool does (engine.models.worker_pool): the partial file, progress and safe
points stay the engine's."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Callable

from .worker_pool import WorkerFailed

POLL_S = 0.2  # how often the ranks' result files are read
TAIL_LINES = 20


def host_labels(hosts: list[str], num_gpus: int, device: str) -> list[str]:
    """One label per worker: HOST:cuda:I for each GPU the launcher uses on each host."""
    out = []
    for entry in hosts:
        name, slots = entry.split()[0], int(entry.split("slots=")[1])
        out += [f"{name}:{device}:{i}" for i in range(min(slots, num_gpus) if num_gpus else slots)]
    return out


def deepspeed_command(hosts: list[str], num_gpus: int) -> Callable[[Path], list[str]]:
    """The launch of the ranks for a job file: DeepSpeed's runner over the hostfile beside it."""
    from .ds_runner import free_port, launch_command

    return lambda job: launch_command(job, num_gpus, None, free_port(), hosts, module="engine.models.rank_worker")


class HostPool:
    """Generator-like (eos_ids, devices, close) over ranks a launcher starts; run_chunks deals."""

    def __init__(self, command: Callable[[Path], list[str]], devices: list[str], spec: dict, folder: Path,
                 hostfile: str = "", log=print):
        from .ds_runner import HOSTFILE
        from .generation import eos_token_ids
        from .loading import load_tokenizer

        trust = spec["trust_remote_code"]
        self.eos_ids = eos_token_ids(spec["path"], load_tokenizer(spec["path"], trust_remote_code=trust), trust)
        self.devices, self.log = devices, log
        self._command, self._spec, self._folder, self._hostfile, self._hostfile_name = command, spec, Path(folder), hostfile, HOSTFILE

    def run_chunks(self, chunks, finished, on_batch=None) -> None:
        """Write the job, launch the ranks, hand each chunk a rank finishes to finished(chunk,
        completions) (it may raise StopRequested: the ranks are then killed)."""
        from .ds_runner import child_env

        if not chunks:
            return
        by_key = {c.key: c for c in chunks}
        with tempfile.TemporaryDirectory(prefix=".workers-", dir=self._folder) as tmp:
            job = Path(tmp) / "job.json"
            job.write_text(json.dumps({**self._spec, "chunks": [{**vars(c), "stop": list(c.stop)} for c in chunks]}))
            if self._hostfile:
                (Path(tmp) / self._hostfile_name).write_text(self._hostfile)
            cmd = self._command(job)
            self.log("generation workers: " + shlex.join(cmd))
            output = Path(tmp) / "launcher.log"
            with output.open("w") as out:
                proc = subprocess.Popen(cmd, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            offsets: dict[Path, int] = {}
            try:
                while True:
                    code = proc.poll()
                    for path in sorted(Path(tmp).glob("rank-*.jsonl")):
                        for record in self._new_records(path, offsets):
                            chunk = by_key.pop(record["key"])
                            if on_batch is not None:
                                on_batch(chunk, len(chunk.prompts), record["tokens"])
                            finished(chunk, record["completions"])
                    if code is not None:
                        break
                    time.sleep(POLL_S)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            if code != 0 or by_key:
                tail = deque(output.read_text(errors="replace").splitlines(), maxlen=TAIL_LINES)
                raise WorkerFailed(", ".join(self.devices), f"the launcher exited {code} with {len(by_key)} chunk(s) "
                                   "unfinished; its last lines:\n" + "\n".join(tail))

    @staticmethod
    def _new_records(path: Path, offsets: dict) -> list[dict]:
        """The complete lines a rank appended since the last read."""
        with path.open("rb") as f:
            f.seek(offsets.get(path, 0))
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        offsets[path] = offsets.get(path, 0) + len(complete)
        return [json.loads(line) for line in complete.splitlines()]

    def close(self) -> None:
        """Nothing to end: the ranks live only inside run_chunks."""
