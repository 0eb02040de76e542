"""A run in detail: a header line (id, live status, where it is, elapsed) over tabs: Progress,
Layers, Results, Merge lab, Samples, Config, Curves. The screen polls the run's detail once a
second (LivePoll: in a thread) and hands it to the Progress, Samples and Config panes; r resumes, s stops
(asks first), 1-7 open the tabs, S the run's system history."""
from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Static, TabbedContent, TabPane

from engine import api

from ..messages import RunChanged
from ..panes.config import ConfigPane
from ..panes.curves import CurvesPane
from ..panes.layers import LayersPane
from ..panes.merge_lab import MergeLabPane
from ..panes.progress import ProgressPane
from ..panes.results import ResultsPane
from ..panes.samples import SamplesPane
from .runs import stoppable
from ..widgets.footer import ImmFooter
from ..widgets.live_poll import LivePoll
from ..widgets.plain import clean
from ..widgets.fmt import STATUS_STYLE, duration

TABS = ("progress", "layers", "results", "merge-lab", "samples", "config", "curves")


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
        text.append(f" · its folder is gone: {clean(s.run_dir)}", style="red")  # the words first: a long path is cut
    if s.status == "failed" and s.error:
        text.append(f" · {clean(s.error)}", style="red")
    return text


def focus_target(pane: Widget) -> Widget | None:
    """The pane's first widget that can take the keys and is shown: a hidden one (the Layers table
    of a run without diagnostics) would hold them out of sight, and loses focus once hidden."""
    return next((w for w in pane.query("*") if w.focusable and all(n.display for n in w.ancestors_with_self)), None)


class RunTabPane(TabPane):
    """A TabPane that never claims the tabs when focus lands in it. TabPane does, by a message
    handled later: the open pane's own focus (on mount, after a modal) then undid a tab key
    pressed in between. Panes here are reached by the tabs alone, never by focus."""

    def _on_descendant_focus(self, event) -> None:
        event.prevent_default()  # Textual calls each class's handler unless the default is prevented


class RunDetailScreen(LivePoll, Screen):
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
        Binding("S", "system", "System"),
        *[Binding(str(n), f"tab('{tab}')", f"{tab.replace('-', ' ').capitalize()} tab", show=False)
          for n, tab in enumerate(TABS, 1)],
    ]

    poll_s = 1.0

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id
        self.detail: api.RunDetail | None = None
        self._last_error: str | None = None
        self._header: Text | None = None
        self._tabs_settled = False
        self._asked_tab: str | None = None  # a tab key pressed before the tabs settled

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(self.run_id, style="bold"), id="run-header")
        with TabbedContent(id="tabs"):
            with RunTabPane("Progress", id="progress"):
                yield ProgressPane(self.run_id)
            with RunTabPane("Layers", id="layers"):
                yield LayersPane(self.run_id)
            with RunTabPane("Results", id="results"):
                yield ResultsPane(self.run_id)
            with RunTabPane("Merge lab", id="merge-lab"):
                yield MergeLabPane(self.run_id)
            with RunTabPane("Samples", id="samples"):
                yield SamplesPane(self.run_id)
            with RunTabPane("Config", id="config"):
                yield ConfigPane(self.run_id)
            with RunTabPane("Curves", id="curves"):
                yield CurvesPane(self.run_id)
        yield ImmFooter()

    def on_mount(self) -> None:
        self.sub_title = self.run_id
        self.poll_now()
        self.call_after_refresh(self._focus_pane)

    # ---------------------------------------------------------------- live detail

    def read(self) -> tuple[api.RunDetail, api.Progress | None]:
        detail = api.run_detail(self.run_id, home=self.app.home)
        running = any(s.status == "running" for s in detail.stages)
        return detail, api.progress(self.run_id, home=self.app.home) if running else None

    def show(self, data: tuple[api.RunDetail, api.Progress | None] | Exception) -> None:
        if isinstance(data, Exception):  # a busy or missing database: say so (once), poll again
            error = str(data) or type(data).__name__
            if error != self._last_error:
                self.notify(clean(error), title="run detail", severity="error", markup=False)
            self._last_error = error
            return
        detail, progress = data
        self._last_error = None
        self._say_if_it_ended(self.detail, detail)
        self.detail = detail
        header = header_text(detail.summary)
        if header != self._header:  # once a second; unchanged for a finished run
            self._header = header
            self.query_one("#run-header", Static).update(header)
        self.query_one(ProgressPane).show(detail, progress)
        self.query_one(ConfigPane).show(detail)
        self.query_one(SamplesPane).show(detail)
        if self.app.focused is None and self.is_current:  # a pane hid the widget that had the keys
            self._focus_pane()

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

    # ---------------------------------------------------------------- keys

    @on(TabbedContent.TabActivated)
    def _settled(self) -> None:
        """The tabs' own first activation (of Progress) comes as a message after the screen
        shows; a tab key pressed before it would be undone by it, so it waits for it."""
        if not self._tabs_settled:
            self._tabs_settled = True
            if self._asked_tab is not None:
                self.action_tab(self._asked_tab)

    def action_tab(self, tab: str) -> None:
        if not self._tabs_settled:
            self._asked_tab = tab
            return
        self.query_one(TabbedContent).active = tab
        self.call_after_refresh(self._focus_pane)

    def _focus_pane(self) -> None:
        """Focus the first focusable widget of the open tab, so the pane's own keys work at once.
        The open tab, not the one asked for: focus inside another pane would switch back to it
        (a tab key pressed as the screen opened was undone by the mount's focus)."""
        target = focus_target(self.query_one(f"TabPane#{self.query_one(TabbedContent).active}", TabPane))
        if target is not None:
            target.focus(scroll_visible=False)  # the tab opens at its top, whichever widget takes the keys

    def action_resume(self) -> None:
        self.app.resume_run(self.run_id)

    def action_system(self) -> None:
        from .run_system import RunSystemScreen

        self.app.push_screen(RunSystemScreen(self.run_id))

    def action_stop(self) -> None:
        if self.detail is None or stoppable(self.app, self.detail.summary):
            self.app.stop_run(self.run_id)  # asks first

    def on_run_changed(self, event: RunChanged) -> None:
        if event.run_id == self.run_id:
            self.poll_now()
