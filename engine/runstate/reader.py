"""Read-only access to the index: the standard library's sqlite3 (no sqlite-utils, which pulls in
pandas and numpy where they are installed), no folder created, no migration.

A reader never blocks the engine (WAL: readers see the last committed state). Each thread gets its
own connection. A database file the reader may not write (a copy on a laptop, a read-only mount)
is opened as immutable: a snapshot, which is all such a reader can have.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from ..errors import BrokenStateError, RunStateError
from .queries import RunQueries
from .paths import db_path
_local = threading.local()


def _open(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA user_version").fetchone()  # WAL needs the -shm file: fails where it cannot be made
    except sqlite3.OperationalError:
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def stored_config(row: dict) -> dict:
    """The run's config as its row stores it (JSON); a damaged one is a BrokenStateError."""
    try:
        config = json.loads(row["config"])
    except (TypeError, ValueError):
        config = None
    if not isinstance(config, dict):
        raise BrokenStateError(f"run {row['id']}: its config in imm.db is damaged ({str(row['config'])[:60]!r}); "
                               "the other runs of the home are unaffected")
    return config


class Reader(RunQueries):
    """Queries over one home's imm.db. `Reader.exists` is False when there is no database yet."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.path = db_path(self.home)

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def _conn(self) -> sqlite3.Connection:
        conns = _local.__dict__.setdefault("conns", {})
        conn = conns.get(self.path)
        if conn is None:
            try:
                conn = conns[self.path] = _open(self.path)
            except sqlite3.DatabaseError as exc:
                raise BrokenStateError(f"{self.path}: not a readable imm database ({exc})") from None
        return conn

    def query(self, sql: str, args: tuple | list = ()) -> list[dict]:
        if not self.exists:
            return []
        try:
            return [dict(r) for r in self._conn().execute(sql, args).fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) or "no such column" in str(exc):
                return []  # an older schema: what it lacks reads as empty
            raise RunStateError(f"{self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise BrokenStateError(f"{self.path}: not a readable imm database ({exc})") from None

    # ------------------------------------------------------------ rows
    def layer_stats(self, run_id: str) -> list[dict]:
        return self.query("SELECT * FROM layer_stats WHERE run_id = ? ORDER BY iteration, checkpoint, layer", [run_id])

    def verdicts(self, run_id: str | None = None) -> list[dict]:
        if run_id is None:
            return self.query("SELECT * FROM verdicts ORDER BY run_id, iteration, checkpoint")
        return self.query("SELECT * FROM verdicts WHERE run_id = ? ORDER BY iteration, checkpoint", [run_id])

    def progress(self, run_id: str) -> list[dict]:
        return self.query("SELECT * FROM progress WHERE run_id = ? ORDER BY updated", [run_id])

    def sft_steps(self, run_id: str, after: int = 0) -> list[dict]:
        """SFT steps stored after SQLite row `after` (seq: the row's id; a step stored again gets a new one)."""
        return self.query("SELECT rowid AS seq, * FROM sft_steps WHERE run_id = ? AND rowid > ? ORDER BY iteration, step",
                          [run_id, after])

    def system_samples(self, run_id: str) -> list[dict]:
        return self.query("SELECT * FROM system_samples WHERE run_id = ? ORDER BY ts, id", [run_id])
