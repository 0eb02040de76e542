"""A followed, searchable window onto a growing log file (Toolong's habit: only appended bytes
are read, in a thread; the view keeps the last `window` lines, the whole log stays on disk)."""
from __future__ import annotations

from pathlib import Path

from rich.style import Style
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import var
from textual.strip import Strip
from textual.widgets import Input, Log, Static

from engine import api

from .live_poll import LivePoll
from .plain import clean
from .text_input import TextInput

WINDOW = 5000  # lines kept in view
MATCH = Style(reverse=True, bold=True)  # visible in 16 colours and NO_COLOR alike


class TailLog(Log):
    """A Log that follows new lines only while the user is at the bottom, keeps a scrolled-up view
    on the same lines when the window drops lines off its top, and highlights the search match."""

    BINDINGS = [Binding("end", "scroll_end", "Follow log", show=False)]

    following = var(True)  # set by where the user scrolls to: at the bottom or not
    match_line: int | None = None

    # Keys scroll at once, not animated: under a busy engine an append comes every 0.2 s and
    # cut an animated scroll short (End never reached the bottom, so never followed again;
    # PageUp could be pulled back to the bottom before it paused following).
    def action_scroll_end(self) -> None:
        """End: to the bottom, and follow."""
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.following = True

    def action_scroll_home(self) -> None:
        self.scroll_home(animate=False, immediate=True, x_axis=False)

    def action_scroll_up(self) -> None:
        self.scroll_up(animate=False, immediate=True)

    def action_scroll_down(self) -> None:
        self.scroll_down(animate=False, immediate=True)

    def action_page_up(self) -> None:
        self.scroll_page_up(animate=False)

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)

    def append(self, lines: list[str]) -> None:
        dropped = max(self.line_count + len(lines) - self.max_lines, 0) if self.max_lines else 0
        self.write_lines(lines, scroll_end=False)
        if dropped and self.match_line is not None:
            self.match_line = self.match_line - dropped if self.match_line >= dropped else None
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif dropped:
            self.scroll_to(y=max(self.scroll_y - dropped, 0), animate=False, immediate=True)

    def render_line(self, y: int) -> Strip:
        """Row y of the view (the Line API); the search match's line highlighted."""
        strip = super().render_line(y)
        return strip.apply_style(MATCH) if self.match_line is not None and self.scroll_offset.y + y == self.match_line else strip

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Only scrolling moves this: a new horizontal scrollbar (a longer line) changes the bottom
        # without the user leaving it, so following is not re-derived from the position each time.
        self.following = round(new_value) >= self.max_scroll_y


class LogView(LivePoll, Vertical):
    """The log of a run: follows new lines unless scrolled up (End follows again); `/` searches,
    n / N go to the next / previous match."""

    DEFAULT_CSS = """
    LogView { height: 1fr; }
    LogView > #log-state { height: 1; color: $text-muted; }
    LogView > TailLog { height: 1fr; border: none; }
    LogView > Input { dock: bottom; display: none; }
    LogView > Input.-open { display: block; }
    """
    BINDINGS = [
        Binding("slash", "search", "Search log"),
        Binding("n", "find(1)", "Next match", show=False),
        Binding("N", "find(-1)", "Prev match", show=False),
        Binding("end", "follow", "Follow log", show=False),
    ]
    poll_s = 0.2  # 2,000 lines/s arrive as one batch of ~400 lines per read

    def __init__(self, path: Path | None = None, window: int = WINDOW, **kw):
        super().__init__(**kw)
        self.path = path
        self.window = window
        self._offset: int | None = None  # None: start near the end of the file
        self._query = ""
        self._note = ""
        self._state = ""  # the state line as shown

    def compose(self) -> ComposeResult:
        yield Static("", id="log-state", markup=False)
        yield TailLog(max_lines=self.window, id="log")
        yield TextInput(placeholder="search the log (Enter finds, Escape closes)", id="log-search")

    @property
    def log(self) -> TailLog:
        return self.query_one(TailLog)

    def on_mount(self) -> None:
        self.watch(self.log, "scroll_y", lambda: self.show_state(), init=False)
        self.watch(self.log, "following", lambda: self.show_state(), init=False)
        self.show_state()
        if self.path is not None:
            self.start_polling()

    def tail(self, path: Path) -> None:
        """Start tailing `path` (e.g. once the run's detail names its log)."""
        first = self.path is None
        self.path, self._offset = path, None
        self.log.clear()
        if first:
            self.start_polling()

    def read(self) -> tuple[list[str], int]:
        """Only the bytes appended since the last read; a burst larger than the window keeps its end."""
        assert self.path is not None  # polling starts once a log is followed
        lines, offset = api.read_log(self.path, self._offset)
        return [clean(s) for s in lines[-self.window:]], offset

    def show(self, data: tuple[list[str], int] | Exception) -> None:
        if isinstance(data, Exception):
            self._note = clean(data)
            return self.show_state()
        lines, self._offset = data
        if lines:
            self.log.append(lines)
            self.show_state()

    # ---------------------------------------------------------------- following and search

    def show_state(self) -> None:
        log = self.log
        mode = "following" if log.following else "paused: End follows"
        # The search's answer first: on a narrow terminal the end of the line is what gets cut.
        kept = f" (the last {self.window:,} kept)" if log.line_count >= self.window else ""
        text = ((f"{self._note} · " if self._note else "")
                + f"log · {mode} · {log.line_count:,} line{'' if log.line_count == 1 else 's'}{kept} · / search")
        if text != self._state:  # each poll asked for a layout pass of the screen, mostly for nothing
            self._state = text
            self.query_one("#log-state", Static).update(text, layout=False)  # height 1, width 1fr

    def action_follow(self) -> None:
        self.log.action_scroll_end()
        self.show_state()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.add_class("-open")
        box.focus()

    @on(Input.Submitted, "#log-search")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._query = event.value
        self.query_one("#log-search", Input).remove_class("-open")
        self.log.focus()
        self.action_find(1, start=int(self.log.scroll_y) - 1)

    def on_key(self, event) -> None:
        box = self.query_one("#log-search", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.remove_class("-open")
            self.log.focus()

    def action_find(self, step: int, start: int | None = None) -> None:
        """Go to the next (step 1) or previous (-1) line holding the query, wrapping around."""
        log = self.log
        if not self._query:
            self._note = "no search yet: press /"
            return self.show_state()
        if start is None:
            start = log.match_line if log.match_line is not None else int(log.scroll_y) - 1
        lines, needle = log.lines, self._query.lower()
        order = [(start + step * i) % len(lines) for i in range(1, len(lines) + 1)]
        hit = next((y for y in order if needle in lines[y].lower()), None)
        log.match_line = hit
        if hit is None:
            self._note = f"no match for {self._query!r}"
        else:
            self._note = f"{self._query!r}: line {hit + 1:,}"
            log.scroll_to(y=max(hit - log.size.height // 3, 0), animate=False, immediate=True)
        log.refresh()
        self.show_state()
