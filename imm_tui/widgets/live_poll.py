"""Poll engine data while a widget is visible: read in a thread worker, show on the UI thread,
then arm the next read. Reads never overlap, and a hidden tab or a covered screen reads nothing."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from textual import work
from textual.message import Message
from textual.timer import Timer

if TYPE_CHECKING:  # the mixin runs on a Widget: its methods are the widget's
    from textual.widget import Widget as _Widget
else:
    _Widget = object

# How often a hidden widget checks whether it became visible (cheap: no read).
HIDDEN_CHECK_S = 0.5


class Polled(Message, bubble=False):  # type: ignore[call-arg]  # textual is read as Any by mypy
    """What one read returned: the data, or the exception it raised (the engine's UserError, or
    e.g. a database caught mid-write), which the widget shows as text and reads again later."""

    def __init__(self, data: Any):
        super().__init__()
        self.data = data


class LivePoll(_Widget):
    """Mixin for a Widget: define `read()` (runs in a thread; engine.api calls only) and
    `show(data)` (UI thread; data may be an Exception; it may be async, e.g. to mount widgets);
    call `start_polling()` from on_mount."""

    poll_s: float = 2.0
    _poll_timer: Timer | None = None

    def read(self) -> Any:
        raise NotImplementedError

    def show(self, data: Any) -> Any:  # what read() returned, or the Exception it raised; None or awaitable
        raise NotImplementedError

    def start_polling(self) -> None:
        self._poll_tick()

    def poll_now(self) -> None:
        """Read at once (after an action changed what is on disk or what is shown)."""
        self._poll_worker()

    def _arm(self, delay: float) -> None:
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll_timer = self.set_timer(delay, self._poll_tick)

    def _poll_tick(self) -> None:
        if self.is_on_screen and self.screen.is_current:
            self._poll_worker()
        else:
            self._arm(HIDDEN_CHECK_S)

    @work(thread=True, exclusive=True, group="live-poll", exit_on_error=False)
    def _poll_worker(self) -> None:
        try:
            data = self.read()
        except Exception as exc:  # shown in the widget; the next poll tries again
            data = exc
        self.post_message(Polled(data))

    async def on_polled(self, message: Polled) -> None:
        message.stop()
        shown = self.show(message.data)
        if inspect.isawaitable(shown):
            await shown
        self._arm(self.poll_s)
