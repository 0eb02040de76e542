"""Generation over several worker processes, each with its own copy of the model on its own
device (engine.models.placement). The stage's chunks (engine.stages.resumable: each seeded by
itself) are dealt to whichever worker is free; each finished chunk comes back to the engine
process, which alone writes the partial file and reports progress (the sum over the workers).
Because a chunk's draws depend only on its own seed, the output is the one-worker output.

A worker that fails (an exception, out of memory, killed) fails the stage with its device named;
the others are stopped. Workers also end themselves when the engine process is gone (killed), so
nothing is left holding a GPU; close() ends them all before the next stage starts."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from typing import Any
from collections import deque
from multiprocessing.connection import wait

from .placement import Slot

JOIN_S = 30  # how long a worker asked to end may take before it is killed


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error or a MemoryError (the stage's error then names what to lower)."""
    import torch

    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError))


class WorkerFailed(Exception):
    """A generation worker failed; `device` names where, `out_of_memory` whether it ran out."""

    def __init__(self, device: str, message: str, out_of_memory: bool = False):
        super().__init__(f"generation worker on {device} failed: {message}")
        self.device, self.out_of_memory = device, out_of_memory


def exit_with_parent(parent: int) -> None:
    """A worker (or vLLM child) whose parent process died (SIGKILL leaves it no time to stop its
    children) ends itself."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def serve(conn, parent: int, slot: Slot, threads: int, backend: str, path: str, dtype: str, batch_size: int,
          trust_remote_code: bool) -> None:
    """A worker process: load the model on the slot's device, then answer chunks with
    ("batch", prompts, tokens) reports and a ("done", completions) until None arrives."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ctrl+c reaches the engine, which stops us
    exit_with_parent(parent)
    if slot.gpus:  # before torch sets CUDA up
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
    try:
        import torch

        from ..domain import GenerationBackend
        from .backends import make_generator
        from .loading import torch_dtype

        torch.set_num_threads(threads)
        gen = make_generator(GenerationBackend(backend), path, slot.device, torch_dtype(dtype, slot.device), batch_size, trust_remote_code,
                             tensor_parallel=max(1, len(slot.gpus)))
        conn.send(("ready", gen.eos_ids))
        while (chunk := conn.recv()) is not None:
            done = chunk.run(gen, lambda prompts, tokens: conn.send(("batch", prompts, tokens)))
            conn.send(("done", done))
    except BaseException as exc:  # noqa: BLE001  (every failure goes back to the engine)
        conn.send(("error", f"{type(exc).__name__}: {exc}", is_out_of_memory(exc), traceback.format_exc()))


class WorkerPool:
    """Generator-like (eos_ids, close, devices) over worker processes; run_chunks deals chunks."""

    def __init__(self, slots: list[Slot], threads: int, backend: str, path, dtype: str, batch_size: int,
                 trust_remote_code: bool = False, log=print):
        context = multiprocessing.get_context("spawn")
        self.devices = [s.label for s in slots]
        self.log = log
        self._workers: list[tuple[Slot, Any, Any]] = []  # (slot, process, connection)
        self._busy: dict = {}
        try:
            for slot in slots:
                conn, child = context.Pipe()
                process = context.Process(target=serve, args=(child, os.getpid(), slot, threads, backend, str(path), dtype,
                                                              batch_size, trust_remote_code), daemon=False)
                process.start()
                child.close()  # the worker's end: closed here, so its death reads as EOF
                self._workers.append((slot, process, conn))
            log("generation workers: " + ", ".join(f"pid {p.pid} on {s.label}" for s, p, _ in self._workers)
                + f" ({threads} torch thread(s) each)" * (not any(s.gpus for s in slots)))
            ready = [self._receive(w) for w in self._workers]
        except BaseException:
            self.close()
            raise
        self.eos_ids = ready[0][1]

    def _ended(self, worker) -> WorkerFailed:
        slot, process, _ = worker
        process.join(timeout=JOIN_S)
        self.close()
        return WorkerFailed(slot.label, f"its process ended (exit code {process.exitcode})")

    def _send(self, worker, chunk) -> None:
        """Give the worker its chunk; a worker that died while idle reads as a broken pipe here."""
        self._busy[worker[2]] = chunk
        try:
            worker[2].send(chunk)
        except (BrokenPipeError, OSError):
            raise self._ended(worker) from None

    def _receive(self, worker):
        slot, process, conn = worker
        try:
            message = conn.recv()
        except (EOFError, OSError):
            raise self._ended(worker) from None
        if message[0] == "error":
            self.log(f"generation worker on {slot.label}:\n{message[3]}")
            self.close()
            raise WorkerFailed(slot.label, message[1], message[2])
        return message

    def run_chunks(self, chunks, finished, on_batch=None) -> None:
        """Deal the chunks to the free workers; finished(chunk, completions) as each comes back
        (in the engine process; it may raise StopRequested, and close() then ends the workers);
        on_batch(chunk, prompts, tokens) as a worker reports a batch."""
        pending = deque(chunks)
        workers = {w[2]: w for w in self._workers}
        busy = self._busy  # connection -> the chunk its worker is on
        for worker in self._workers:
            if pending:
                self._send(worker, pending.popleft())
        while busy:
            for conn in wait(list(busy)):
                message = self._receive(workers[conn])
                if message[0] == "batch":
                    if on_batch is not None:
                        on_batch(busy[conn], message[1], message[2])
                    continue
                chunk = busy.pop(conn)
                if pending:  # the next chunk first, so the worker is busy while this one is saved
                    self._send(workers[conn], pending.popleft())
                finished(chunk, message[1])

    def close(self) -> None:
        """End every worker: an idle one is asked (and killed after JOIN_S), a busy one (a stop
        or another worker's failure in the middle of a chunk) is killed at once."""
        for _, process, conn in self._workers:
            if conn in self._busy:
                process.kill()
                continue
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + JOIN_S
        for _, process, conn in self._workers:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self._workers, self._busy = [], {}
