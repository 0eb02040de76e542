"""System: CPU per core and memory (psutil) and, where NVML finds NVIDIA GPUs,
each GPU's utilisation and memory (engine.api.Sampler), with the last HISTORY samples as
sparklines; sampled once a second in a thread worker (LivePoll). No NVML library, driver or GPU: the GPU
section is simply absent. A run's stored history is the run screen's System view (run_system.py)."""
from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from engine.api import MachineSample, Sampler

from ..widgets.footer import ImmFooter
from ..widgets.live_poll import LivePoll
from ..widgets.plain import plain

HISTORY = 60
GIB = 1024**3


def bar(percent: float, width: int = 20) -> str:
    filled = round(max(0.0, min(percent, 100.0)) / 100 * width)
    return "█" * filled + "·" * (width - filled)


def core_lines(cores: tuple[float, ...], columns: int) -> Text:
    """Per-core bars, `columns` to a line."""
    cells = [f"{i:>3} {bar(p, 10)} {p:3.0f}%" for i, p in enumerate(cores)]
    return Text("\n".join("   ".join(cells[i:i + columns]) for i in range(0, len(cells), columns)))


SPARKS = "▁▂▃▄▅▆▇█"
LABEL_WIDTH = 32


def spark(values, width: int) -> str:
    """The last `width` percentages as bars on a fixed 0-100 scale."""
    return "".join(SPARKS[min(int(max(v, 0.0) / 100 * len(SPARKS)), len(SPARKS) - 1)] for v in list(values)[-width:])


class Meter(Static):
    """One line: a label with the current value, then the recent history on a 0-100% scale."""

    def __init__(self, meter_id: str) -> None:
        super().__init__(id=meter_id, classes="meter", markup=False)
        self.history: deque[float] = deque(maxlen=HISTORY)
        self.label = ""

    def add(self, value: float, label: str) -> None:
        self.history.append(value)
        self.label = label
        self.refresh()

    def render(self) -> Text:
        width = max(self.size.width - LABEL_WIDTH - 1, 0)
        return plain(f"{self.label:<{LABEL_WIDTH}} {spark(self.history, width)}")


class SystemScreen(LivePoll, Screen):
    BINDINGS = [("escape", "app.pop_screen", "Back")]
    poll_s = 1.0

    def __init__(self, sampler: Sampler | None = None) -> None:
        super().__init__()
        self.sampler = sampler or Sampler()

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="system"):
            yield Meter("cpu")
            yield Meter("memory")
            yield Static(id="cores", markup=False)
            yield Static("GPUs", id="gpu-title", classes="section-title", markup=False)
        yield ImmFooter()

    def on_mount(self) -> None:
        self.query_one("#gpu-title").display = False

    def on_screen_resume(self) -> None:
        self.poll_now()

    def read(self) -> MachineSample:
        return self.sampler.sample()

    async def show(self, s: MachineSample | Exception) -> None:
        if isinstance(s, Exception):  # the next sample tries again
            return
        self.query_one("#cpu", Meter).add(s.cpu, f"CPU {s.cpu:5.1f}% ({len(s.cores)} cores)")
        mem = 100.0 * s.mem_used / s.mem_total if s.mem_total else 0.0
        self.query_one("#memory", Meter).add(mem, f"Mem {s.mem_used / GIB:5.1f}/{s.mem_total / GIB:.0f} GiB")
        columns = max(1, (self.size.width - 2) // 24)
        self.query_one("#cores", Static).update(core_lines(s.cores, columns))
        self.query_one("#gpu-title").display = bool(s.gpus)
        scroll = self.query_one("#system")
        for gpu in s.gpus:
            if not scroll.query(f"#gpu-{gpu.index}"):
                await scroll.mount_all([Meter(f"gpu-{gpu.index}"), Meter(f"gpumem-{gpu.index}")])
            scroll.query_one(f"#gpu-{gpu.index}", Meter).add(gpu.util, f"GPU{gpu.index} {gpu.util:3.0f}% {gpu.name}")
            used = 100.0 * gpu.mem_used / gpu.mem_total if gpu.mem_total else 0.0
            scroll.query_one(f"#gpumem-{gpu.index}", Meter).add(
                used, f"GPU{gpu.index} mem {gpu.mem_used / GIB:5.1f}/{gpu.mem_total / GIB:.0f} GiB")
