"""Text from the model, the log, configs and the engine, made safe to show: never parsed as
markup, never passed to the terminal as control sequences (ESC shows as ␛; see engine.plain_text)."""
from __future__ import annotations

from rich.text import Text

from engine.api import clean


def plain(value: object, style: str = "") -> Text:
    """A Text holding `value` literally: for DataTable cells, Static, Label and notifications."""
    return Text(clean(value), style=style)
