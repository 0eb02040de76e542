"""Messages shared between the app and its screens."""
from __future__ import annotations

from textual.message import Message


class RunChanged(Message):
    """An engine action (start, stop, resume, adopt) changed a run: a screen showing runs may poll
    at once instead of waiting for its next refresh. Posted to the current screen."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
