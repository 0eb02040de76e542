"""JSON Lines files: reading with errors that name the file and line, atomic writing, and durable
appending, all durable (engine.durable)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .durable import write_atomic
from .errors import UserError


def read_records(path: Path, where: str) -> list[dict]:
    """The JSON objects of a JSONL file (blank lines skipped). A line that is not a JSON object is a
    UserError starting with `where` (e.g. "task 'gsm8k'") and naming the file and line."""
    records = []
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{where}: {path}:{lineno}: not UTF-8 text (byte {raw[exc.start]:#04x})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: {path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise UserError(f"{where}: {path}:{lineno}: expected a JSON object, got {record!r:.60}")
            records.append(record)
    return records


def write_records(path: Path, records: list[dict]) -> None:
    """Write records to a temporary sibling, then publish it durably (engine.durable)."""
    write_atomic(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def append_record(path: Path, record: dict) -> None:
    """Append one record as a line, flushed and fsynced before this returns (a file read again
    after a crash holds every record appended before it)."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
