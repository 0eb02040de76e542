"""The imm app: runs, a run's detail, new runs, system, compare and export, over the engine API.

The app reads SQLite and log files only (in thread workers) and starts, stops and resumes engines
only through `engine.api`: closing it never stops an engine, and opening it again finds the runs
where they are. Screens import lazily, so the first screen comes up fast.
"""
from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Callable

from textual import work
from textual.app import App
from textual.binding import Binding

from engine import api
from engine.errors import RunStateError, UserError

from .commands_palette import ImmCommands
from .messages import RunChanged
from .widgets.dialogs import ConfirmScreen, PromptScreen
from .widgets.plain import clean

JUMPS = "runs | new | system | run ID"
# Seconds after the last screen change before the objects that stay (modules, the open screens)
# are moved out of the garbage collector's view: see ImmApp._settle_gc.
GC_SETTLE_S = 1.0


class ImmApp(App):
    TITLE = "imm"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ImmCommands}
    # Screens get the class -narrow or -wide (app.tcss lays out side panels on wide terminals).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("question_mark", "help", "Keys", key_display="?"),
        Binding("colon", "jump", "Jump", key_display=":"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, home: str | Path | None = None):
        super().__init__()
        self.home = api.home_dir(home)
        self.crash_report: Path | None = None  # where an unhandled error's traceback was written
        self.sub_title = self.home.name  # the folder's name: the full path shows on an empty runs screen

    def on_mount(self) -> None:
        from .screens.runs import RunsScreen

        self._gc_timer = None
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self.push_screen(RunsScreen())
        problem = api.write_problem(self.home)
        if problem:
            self.notify(clean(problem), title="read-only home", severity="warning", timeout=30, markup=False)

    # ------------------------------------------------------------ garbage collection
    # Drawing a live screen (a log at 2,000 lines a second) makes enough short-lived containers
    # that CPython ran a full collection about once a second, each walking every object the app
    # holds (~180k: modules, widgets, the runs table) for ~100 ms on the UI thread: the slow
    # key presses. Once a screen has settled, what exists then is frozen (gc.freeze: skipped
    # by collections, still freed by reference counting), so full collections only walk what
    # is new; each screen change first unfreezes and collects, so closed screens are freed.
    def _screen_changed(self, _screen) -> None:
        if self._gc_timer is not None:
            self._gc_timer.stop()
        self._gc_timer = self.set_timer(GC_SETTLE_S, self._settle_gc)

    def _settle_gc(self) -> None:
        self._gc_timer = None
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _handle_exception(self, error: Exception) -> None:
        """An unhandled error ends the app (Textual); its traceback also goes to a file first, as
        the one Textual prints is lost with the screen of a closed terminal."""
        self.crash_report = write_crash_report(self.home, error)
        super()._handle_exception(error)

    def on_unmount(self) -> None:
        gc.unfreeze()  # the next collection may free this app (tests run many in one process)

    # ------------------------------------------------------------ navigation
    def open_run(self, run_id: str) -> None:
        from .screens.run_detail import RunDetailScreen

        if isinstance(self.screen, RunDetailScreen) and self.screen.run_id == run_id:
            return  # already there (`:run X` on X)
        self.push_screen(RunDetailScreen(run_id))

    def show_runs(self) -> None:
        """Back to the runs table (the first screen)."""
        while len(self.screen_stack) > 2:
            self.pop_screen()

    def new_run(self) -> None:
        from .screens.new_run import NewRunScreen

        problem = api.write_problem(self.home)
        if problem:  # before the user fills a form that cannot be launched
            self.notify(clean(problem), title="new run", severity="error", markup=False)
            return
        self.push_screen(NewRunScreen())

    def show_system(self) -> None:
        from .screens.system import SystemScreen

        if not isinstance(self.screen, SystemScreen):
            self.push_screen(SystemScreen())

    def compare_runs(self, run_ids: list[str]) -> None:
        if len(run_ids) < 2:
            self.notify("Mark two or more runs with space, then press c.", severity="warning")
            return
        from .screens.compare import CompareScreen

        self.push_screen(CompareScreen(list(run_ids)))

    def export_run(self, run_id: str) -> None:
        from .screens.export import ExportScreen

        self.push_screen(ExportScreen(run_id))

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen(self.screen))

    def action_jump(self) -> None:
        self.push_screen(PromptScreen("Jump to", JUMPS), self.jump)

    def jump(self, where: str | None) -> None:
        """k9s-style `:` targets: runs, new, system, run ID (an id or a unique prefix of one)."""
        word, _, arg = (where or "").lstrip(":").strip().partition(" ")
        targets = {"runs": self.show_runs, "new": self.new_run, "system": self.show_system}
        if word in targets:
            targets[word]()
        elif word == "run" and arg.strip():
            self.resolve_and_open(arg.strip())
        elif word:
            self.notify(f"jump: got {clean(where)!r}; allowed: {JUMPS}", severity="warning", markup=False)

    # ------------------------------------------------------------ engine actions
    def resume_run(self, run_id: str) -> None:
        self.call_engine(f"resume {run_id}", partial(api.resume, run_id, home=self.home), changed=run_id,
                         on_done=lambda s: self.notify(f"{s.run_id}: resumed (engine pid {s.pid})" if s.pid
                                                       else f"{s.run_id}: nothing left to run", markup=False))

    def stop_run(self, run_id: str) -> None:
        """Ask first; then ask the engine to stop at its next safe point."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_engine(f"stop {run_id}", partial(api.stop, run_id, home=self.home), changed=run_id,
                                 on_done=lambda pid: self.notify(f"{run_id}: stop requested (engine pid {pid}); "
                                                                 "it stops at its next safe point", markup=False))

        self.push_screen(ConfirmScreen(f"Stop run {run_id}? Its engine stops after the running step; "
                                       "r resumes it later."), answered)

    def resolve_and_open(self, prefix: str) -> None:
        self.call_engine(f"run {prefix}", partial(api.run_detail, prefix, home=self.home),
                         on_done=lambda d: self.open_run(d.summary.id))

    @work(thread=True, group="engine", exit_on_error=False)
    def call_engine(self, what: str, call: Callable[[], object], on_done: Callable | None = None,
                    changed: str | None = None) -> None:
        """call() (an engine.api call) off the UI thread; engine errors become notifications with
        the engine's text; then on_done(result) on the UI thread, and RunChanged(changed) to the screen."""
        try:
            result = call()
        except (UserError, RunStateError) as exc:
            self.call_from_thread(self.notify, clean(exc), title=clean(what), severity="error", markup=False)
            return
        except Exception as exc:  # an engine bug must not end the app: show it as a message
            self.call_from_thread(self.notify, clean(f"{type(exc).__name__}: {exc}"), title=clean(what),
                                  severity="error", markup=False)
            return
        self.call_from_thread(self._engine_done, result, on_done, changed)

    def _engine_done(self, result, on_done: Callable | None, changed: str | None) -> None:
        if on_done is not None:
            on_done(result)
        if changed:
            self.screen.post_message(RunChanged(changed))

def write_crash_report(home: Path, error: BaseException) -> Path | None:
    """The traceback in HOME/imm-crash-TIME-PID.txt, else in the temporary folder; None if neither
    can be written."""
    text = "".join(traceback.format_exception(error))
    name = f"imm-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    for folder in (home, Path(tempfile.gettempdir())):
        try:
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            return folder / name
        except OSError:
            continue
    return None


def run_app(home: str | None = None) -> int:
    """Run the app; a non-zero status after an unhandled error, with where its traceback went."""
    app = ImmApp(home)  # a home that is unsafe or damaged is said first, terminal or not
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("the app needs a terminal (stdin and stdout are not one); "
                        "for scripts use the commands: imm ls, imm show RUN, imm run PRESET (imm --help)")
    app.run()
    if app.crash_report is not None:
        print(f"imm: the app stopped on an unexpected error; its traceback is in {app.crash_report}", file=sys.stderr)
    return app.return_code or 0
