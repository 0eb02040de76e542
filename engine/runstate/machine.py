"""The machine's load, read from the system: CPU per core (/proc/stat), memory (/proc/meminfo)
and, where NVML finds NVIDIA GPUs, each GPU's utilisation and memory (nvidia-ml-py). No NVML
library, driver or GPU: no GPUs, never an error. The app's System screen shows it live; the
engine stores it during each stage (engine.runstate.system_history). Standard library only: the
app imports it."""
from __future__ import annotations

from dataclasses import dataclass


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
        self._last: dict[str, tuple[int, int]] = {}
        self._nvml = None  # the pynvml module once initialised; False when unavailable

    def cores(self) -> tuple[float, ...]:
        out = []
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if not (name.startswith("cpu") and name[3:].isdigit()):
                    continue
                values = [int(v) for v in fields]
                idle, total = values[3] + values[4], sum(values[:8])  # idle + iowait; user..steal
                last_idle, last_total = self._last.get(name, (0, 0))
                self._last[name] = (idle, total)
                span = total - last_total
                out.append(100.0 * (1 - (idle - last_idle) / span) if span > 0 else 0.0)
        return tuple(out)

    @staticmethod
    def memory() -> tuple[int, int]:
        info = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
        return info["MemTotal"] - info.get("MemAvailable", info.get("MemFree", 0)), info["MemTotal"]

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
