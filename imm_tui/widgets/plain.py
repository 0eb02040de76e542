"""Text from the model, the log, configs and the engine, made safe to show: never parsed as
markup, never passed to the terminal as control sequences (ESC shows as ␛)."""
from __future__ import annotations

from rich.text import Text

# C0 controls (but tab and newline) -> their Unicode "control picture"; DEL and C1 (e.g. the
# one-byte CSI 0x9b) -> the replacement character.
_CONTROLS = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)}
_CONTROLS.update({c: 0xFFFD for c in range(0x7F, 0xA0)})


def clean(value: object) -> str:
    """`value` as a string without terminal control characters."""
    return str(value).translate(_CONTROLS)


def plain(value: object, style: str = "") -> Text:
    """A Text holding `value` literally: for DataTable cells, Static, Label and notifications."""
    return Text(clean(value), style=style)
