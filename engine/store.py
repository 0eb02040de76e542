"""The SQLite index of all runs in one home folder (WAL, busy timeout, numbered migrations).

Tables: runs, stages (the plan and timeline of each run), metrics (one value per checkpoint,
task and metric), events (progress lines). The engine process is the only writer of a run's rows
once the run exists; readers (`imm ls`, `imm show`, the app) only read.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import sqlite_utils

DB_NAME = "imm.db"
BUSY_TIMEOUT_MS = 10_000


def home_dir(explicit: str | None = None) -> Path:
    """--home DIR, else $IMM_HOME, else ./imm-runs."""
    return Path(explicit or os.environ.get("IMM_HOME") or "imm-runs").expanduser().resolve()


def now() -> float:
    return time.time()


def _v1(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": str, "name": str, "preset": str, "method": str, "status": str, "pid": int,
            "config": str, "run_dir": str, "created": float, "updated": float, "error": str,
        },
        pk="id",
    )
    db["stages"].create(
        {
            "run_id": str, "ord": int, "iteration": int, "stage": str, "status": str,
            "started": float, "ended": float, "error": str, "artifact": str, "info": str,
        },
        pk=("run_id", "iteration", "stage"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["metrics"].create(
        {
            "run_id": str, "checkpoint": str, "iteration": int, "task": str, "domain": str,
            "metric": str, "value": float, "n": int,
        },
        pk=("run_id", "checkpoint", "task", "metric"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["events"].create(
        {"id": int, "run_id": str, "ts": float, "iteration": int, "stage": str, "kind": str, "message": str},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["events"].create_index(["run_id", "id"])


MIGRATIONS = [_v1]  # MIGRATIONS[i] brings the schema from version i to i + 1


class Store:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(self.home / DB_NAME)
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.enable_wal()
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for target in range(version, len(MIGRATIONS)):
            with self.db.conn:
                MIGRATIONS[target](self.db)
                self.db.execute(f"PRAGMA user_version = {target + 1}")

    # ------------------------------------------------------------ runs
    def create_run(self, run: dict, plan: list[tuple[int, str]]) -> None:
        """Insert a run and its whole stage plan in one transaction."""
        with self.db.conn:
            self.db["runs"].insert({**run, "created": now(), "updated": now()})
            self.db["stages"].insert_all(
                {"run_id": run["id"], "ord": i, "iteration": it, "stage": st, "status": "pending"}
                for i, (it, st) in enumerate(plan)
            )

    def run(self, run_id: str) -> dict | None:
        rows = list(self.db["runs"].rows_where("id = ?", [run_id]))
        if rows:
            return rows[0]
        matches = list(self.db["runs"].rows_where("id LIKE ?", [run_id + "%"]))
        return matches[0] if len(matches) == 1 else None

    def runs(self) -> list[dict]:
        return list(self.db["runs"].rows_where(order_by="created desc"))

    def update_run(self, run_id: str, **fields) -> None:
        with self.db.conn:
            self.db["runs"].update(run_id, {**fields, "updated": now()})

    # ------------------------------------------------------------ stages
    def stages(self, run_id: str) -> list[dict]:
        return list(self.db["stages"].rows_where("run_id = ?", [run_id], order_by="ord"))

    def set_stage(self, run_id: str, iteration: int, stage: str, **fields) -> None:
        with self.db.conn:
            self.db["stages"].update((run_id, iteration, stage), fields)

    def finish_stage(self, run_id: str, iteration: int, stage: str, artifact: str = "",
                     info: dict | None = None, metrics: list[dict] = ()) -> None:
        """Record a stage's metrics and mark it done in one transaction: both or neither."""
        with self.db.conn:
            if metrics:
                self.db["metrics"].upsert_all(
                    [{"run_id": run_id, **m} for m in metrics], pk=("run_id", "checkpoint", "task", "metric")
                )
            self.db["stages"].update(
                (run_id, iteration, stage),
                {"status": "done", "ended": now(), "artifact": artifact, "info": json.dumps(info or {}), "error": None},
            )

    # ------------------------------------------------------------ metrics and events
    def metrics(self, run_id: str) -> list[dict]:
        return list(self.db["metrics"].rows_where("run_id = ?", [run_id], order_by="iteration, checkpoint, task, metric"))

    def event(self, run_id: str, message: str, iteration: int | None = None, stage: str | None = None,
              kind: str = "info") -> None:
        with self.db.conn:
            self.db["events"].insert(
                {"run_id": run_id, "ts": now(), "iteration": iteration, "stage": stage, "kind": kind, "message": message}
            )

    def events(self, run_id: str, after_id: int = 0) -> list[dict]:
        return list(self.db["events"].rows_where("run_id = ? AND id > ?", [run_id, after_id], order_by="id"))
