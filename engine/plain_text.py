"""Text from models, logs, data and configs made safe to show on a terminal: control characters
(ESC of ANSI CSI / OSC sequences, BEL, CR, the one-byte C1 CSI, bidirectional overrides) never reach it as
themselves."""
from __future__ import annotations

import json

# C0 controls (but tab and newline) -> their Unicode "control picture" (ESC shows as ␛); DEL and
# C1 -> the replacement character.
_CONTROLS = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)}
# Bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069) reorder what follows
# them on the screen ("Trojan Source"): shown as the replacement character like C1.
BIDI_CONTROLS = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROLS.update({c: 0xFFFD for c in (*range(0x7F, 0xA0), *BIDI_CONTROLS)})
# JSON escapes C0 itself; DEL, C1 and the bidi controls as \\uXXXX too, so the line stays the same data.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), *BIDI_CONTROLS)}


def clean(value: object) -> str:
    """`value` as a string without terminal control characters."""
    return str(value).translate(_CONTROLS)


def json_line(record: dict) -> str:
    """One JSONL line (non-ASCII text kept readable) with no control character left raw."""
    return json.dumps(record, ensure_ascii=False).translate(_JSON_ESCAPES) + "\n"
