"""The machine's load, read from the system: CPU per core and memory (psutil) and, where NVML
finds NVIDIA GPUs, each GPU's utilisation and memory (nvidia-ml-py). No NVML library, driver or
GPU: no GPUs, never an error. The app's System screen shows it live; the engine stores it during
each stage (engine.runstate.system_history). No torch or numpy: the app imports it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psutil

from ..cpu_threads import busy_seconds


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    util: float  # %
    mem_used: int  # bytes
    mem_total: int


@dataclass(frozen=True)
class MachineSample:
    cores: tuple[float, ...]  # % busy per core since the last sample
    mem_used: int  # bytes
    mem_total: int
    gpus: tuple[GpuReading, ...]

    @property
    def cpu(self) -> float:
        return sum(self.cores) / len(self.cores) if self.cores else 0.0


class Sampler:
    """Reads the machine; the first sample's CPU numbers cover the time since boot."""

    def __init__(self) -> None:
        # CPU times per core at the last sample (each sampler its own: psutil.cpu_percent keeps
        # one for the whole process, which a second sampler would reset)
        self._last: dict[int, tuple[float, float]] = {}
        self._nvml: Any = None  # the pynvml module once initialised; False when unavailable

    def cores(self) -> tuple[float, ...]:
        out = []
        for i, times in enumerate(psutil.cpu_times(percpu=True)):
            busy, total = busy_seconds(times)
            last_busy, last_total = self._last.get(i, (0.0, 0.0))
            self._last[i] = (busy, total)
            span = total - last_total
            out.append(100.0 * (busy - last_busy) / span if span > 0 else 0.0)
        return tuple(out)

    @staticmethod
    def memory() -> tuple[int, int]:
        """(used, total) bytes; used is what is not available to new processes."""
        mem = psutil.virtual_memory()
        return mem.total - mem.available, mem.total

    def gpus(self) -> tuple[GpuReading, ...]:
        if self._nvml is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:  # no nvidia-ml-py, no driver, no GPU: no GPU section
                self._nvml = False
        if not self._nvml:
            return ()
        nv, out = self._nvml, []
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                name = nv.nvmlDeviceGetName(h)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                util = nv.nvmlDeviceGetUtilizationRates(h).gpu
                out.append(GpuReading(i, name.decode() if isinstance(name, bytes) else name, float(util), mem.used, mem.total))
        except nv.NVMLError:
            return ()
        return tuple(out)

    def sample(self) -> MachineSample:
        used, total = self.memory()
        return MachineSample(self.cores(), used, total, self.gpus())
