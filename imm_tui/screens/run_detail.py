"""A run in detail: a header line (id, live status, where it is, elapsed) over tabs: Progress,
Layers, Results, Merge lab, Samples, Config. The screen polls the run's detail once a second
(in a thread) and hands it to the Progress, Samples and Config panes; r resumes, s stops (asks
first), 1-6 open the tabs."""
from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Static, TabbedContent, TabPane

from engine import api

from ..messages import RunChanged
from ..panes.config import ConfigPane
from ..panes.layers import LayersPane
from ..panes.merge_lab import MergeLabPane
from ..panes.progress import ProgressPane
from ..panes.results import ResultsPane
from ..panes.samples import SamplesPane
from .runs import stoppable
from ..widgets.footer import ImmFooter
from ..widgets.plain import clean
from ..widgets.fmt import duration

POLL_S = 1.0
TABS = ("progress", "layers", "results", "merge-lab", "samples", "config")
STATUS_STYLE = {"running": "bold yellow", "done": "bold green", "failed": "bold red", "interrupted": "bold magenta",
                "stopped": "bold", "missing": "bold red reverse"}


def header_text(s: api.RunSummary) -> Text:
    """run-id (name) · status · iter 1 sft · 5/14 stages · elapsed 3m05s (failed runs: the error)."""
    text = Text(s.id, style="bold")
    if not s.id.startswith(s.name):
        text.append(f" ({clean(s.name)})")
    text.append(" · ")
    text.append(s.status, style=STATUS_STYLE.get(s.status, ""))
    if s.stage is not None:
        text.append(f" · iter {s.iteration} {s.stage}")
    text.append(f" · {s.stages_done}/{s.stages_total} stages · elapsed {duration(s.elapsed)}")
    if s.sweep_running:
        text.append(" · sweep running")
    if s.remote_code:
        text.append(f" · trust_remote_code on ({', '.join(s.remote_code)})", style="bold yellow")
    if s.status == api.RunStatus.MISSING:
        text.append(f" · its folder {clean(s.run_dir)} is gone", style="red")
    if s.status == "failed" and s.error:
        text.append(f" · {clean(s.error)}", style="red")
    return text


class RunDetailScreen(Screen):
    AUTO_FOCUS = None  # focus goes to the open pane's own widget (see _focus_pane)
    DEFAULT_CSS = """
    RunDetailScreen > #run-header { height: auto; max-height: 2; padding: 0 1; background: $boost; }
    RunDetailScreen > TabbedContent { height: 1fr; }
    RunDetailScreen TabPane { padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "resume", "Resume"),
        Binding("s", "stop", "Stop"),
        *[Binding(str(n), f"tab('{tab}')", f"{tab.replace('-', ' ').capitalize()} tab", show=False)
          for n, tab in enumerate(TABS, 1)],
    ]

    class Polled(Message):
        def __init__(self, detail: api.RunDetail | None, progress: api.Progress | None, error: str | None = None):
            super().__init__()
            self.detail, self.progress, self.error = detail, progress, error

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id
        self.detail: api.RunDetail | None = None
        self._last_error: str | None = None
        self._timer: Timer | None = None
        self._header: Text | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(self.run_id, style="bold"), id="run-header")
        with TabbedContent(id="tabs"):
            with TabPane("Progress", id="progress"):
                yield ProgressPane(self.run_id)
            with TabPane("Layers", id="layers"):
                yield LayersPane(self.run_id)
            with TabPane("Results", id="results"):
                yield ResultsPane(self.run_id)
            with TabPane("Merge lab", id="merge-lab"):
                yield MergeLabPane(self.run_id)
            with TabPane("Samples", id="samples"):
                yield SamplesPane(self.run_id)
            with TabPane("Config", id="config"):
                yield ConfigPane(self.run_id)
        yield ImmFooter()

    def on_mount(self) -> None:
        self.sub_title = self.run_id
        self._poll()
        self.call_after_refresh(self._focus_pane, "progress")

    # ---------------------------------------------------------------- live detail

    @work(thread=True, exclusive=True, group="run-detail", exit_on_error=False)
    def _poll(self) -> None:
        try:
            detail = api.run_detail(self.run_id, home=self.app.home)
            running = any(s.status == "running" for s in detail.stages)
            progress = api.progress(self.run_id, home=self.app.home) if running else None
        except Exception as exc:  # noqa: BLE001 - a busy or missing database: say so, poll again
            self.post_message(self.Polled(None, None, str(exc) or type(exc).__name__))
            return
        self.post_message(self.Polled(detail, progress))

    @on(Polled)
    def _polled(self, event: Polled) -> None:
        if event.detail is None:
            if event.error != self._last_error:
                self.notify(clean(event.error), title="run detail", severity="error", markup=False)
            self._last_error = event.error
        else:
            self._last_error = None
            self._say_if_it_ended(self.detail, event.detail)
            self.detail = event.detail
            header = header_text(event.detail.summary)
            if header != self._header:  # once a second; unchanged for a finished run
                self._header = header
                self.query_one("#run-header", Static).update(header)
            self.query_one(ProgressPane).show(event.detail, event.progress)
            self.query_one(ConfigPane).show(event.detail)
            self.query_one(SamplesPane).show(event.detail)
        self._arm()

    def _say_if_it_ended(self, before: api.RunDetail | None, now: api.RunDetail) -> None:
        """A run that ends while watched says so: done, or failed with the engine's error."""
        if before is None or before.summary.status == now.summary.status:
            return
        status = now.summary.status
        if status == "failed":
            self.notify(clean(now.summary.error or "the engine stopped with an error"), title=f"{self.run_id} failed",
                        severity="error", markup=False, timeout=30)
        elif status in ("done", "stopped", "interrupted", "missing"):
            self.notify(f"{self.run_id}: {status}", markup=False)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.stop()  # a poll out of turn (RunChanged) must not start a second chain
        self._timer = self.set_timer(POLL_S, self._tick)

    def _tick(self) -> None:
        if self.is_current:
            self._poll()
        else:
            self._arm()

    # ---------------------------------------------------------------- keys

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.call_after_refresh(self._focus_pane, tab)

    def _focus_pane(self, tab: str) -> None:
        """Focus the first focusable widget of a tab, so the pane's own keys work at once."""
        pane = self.query_one(f"TabPane#{tab}", TabPane)
        target = next((w for w in pane.query("*") if w.focusable), None)
        if target is not None:
            target.focus(scroll_visible=False)  # the tab opens at its top, whichever widget takes the keys

    def action_resume(self) -> None:
        self.app.resume_run(self.run_id)

    def action_stop(self) -> None:
        if self.detail is None or stoppable(self.app, self.detail.summary):
            self.app.stop_run(self.run_id)  # asks first

    def on_run_changed(self, event: RunChanged) -> None:
        if event.run_id == self.run_id:
            self._poll()
