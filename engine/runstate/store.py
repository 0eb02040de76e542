"""The writer of the SQLite index of all runs in one home folder (WAL, busy timeout, numbered
migrations). Readers use `reader.py` (read-only, no migration, no sqlite-utils).

Tables: runs, stages (the plan and timeline of each run), metrics (one value per checkpoint,
task and metric), sweeps (alpha / p trials: queued, running, done,
failed), layer_stats and verdicts (per-layer diagnostics), progress (inside a stage), sft_steps (every
optimizer step of SFT: the curves) and system_samples (the machine's load during each stage). The engine
process is the only writer of a run's rows once the run exists, except that `start_sweep` queues
trials for the sweep worker.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlite_utils

from ..errors import BrokenStateError, RunStateError

from .queries import RunQueries
from .names import RunStatus, Stage, StageStatus
from .paths import db_path, private_files, write_problem
from ..domain import Checkpoint, TrialStatus

BUSY_TIMEOUT_MS = 10_000
SYNCHRONOUS = "FULL"


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


def _v2(db: sqlite_utils.Database) -> None:
    db["sweeps"].create(
        {
            "id": int, "run_id": str, "iteration": int, "alpha": float, "drop_rate": float, "seed": int,
            "subset": int, "results": str, "seconds": float, "weights": str, "adopted": int, "created": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["sweeps"].create_index(["run_id", "iteration"])


def _v3(db: sqlite_utils.Database) -> None:
    # Per-layer diagnostics of an iteration: importance of the model before SFT, and the weight
    # change from it to `checkpoint` (sftT or mergeT).
    db["layer_stats"].create(
        {
            "run_id": str, "iteration": int, "checkpoint": str, "layer": int, "importance": float,
            "importance_pct": float, "weight_change": float, "weight_change_pct": float, "modules": str,
        },
        pk=("run_id", "iteration", "checkpoint", "layer"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["verdicts"].create(
        {
            "run_id": str, "iteration": int, "checkpoint": str, "spearman": float, "verdict": str,
            "threshold": float, "top_importance": str, "top_change": str, "top_overlap": str,
        },
        pk=("run_id", "iteration", "checkpoint"),
        foreign_keys=[("run_id", "runs", "id")],
    )


def _v4(db: sqlite_utils.Database) -> None:
    # Progress inside a stage (one row per stage, overwritten at a bounded rate), and a queue of
    # sweep trials that a detached sweep worker works through.
    db["progress"].create(
        {
            "run_id": str, "iteration": int, "stage": str, "step": int, "total": int, "unit": str,
            "rate": float, "tokens_per_s": float, "loss": float, "started": float, "updated": float,
        },
        pk=("run_id", "iteration", "stage"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["sweeps"].add_column("status", str, not_null_default="done")
    db["sweeps"].add_column("error", str)
    db["runs"].add_column("sweep_pid", int)
    db["events"].drop()  # stage transitions live in `stages`, human lines in engine.log


def _v5(db: sqlite_utils.Database) -> None:
    # What a stage's earlier attempts took (a stopped or killed stage starts again: `started` is
    # the latest attempt's), so elapsed time counts every attempt; what the progress row is about.
    db["stages"].add_column("spent", float)
    db["progress"].add_column("label", str)


def _v6(db: sqlite_utils.Database) -> None:
    # The curves: one row per SFT optimizer step (engine.runstate.steps), and the machine's load
    # sampled during each stage (engine.runstate.system_history; gpus: JSON, one entry per GPU).
    db["sft_steps"].create(
        {"run_id": str, "iteration": int, "step": int, "loss": float, "lr": float, "grad_norm": float,
         "tokens": int, "tokens_per_s": float, "ts": float},
        pk=("run_id", "iteration", "step"),
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["system_samples"].create(
        {"id": int, "run_id": str, "iteration": int, "stage": str, "ts": float, "cpu_pct": float,
         "mem_used": int, "mem_total": int, "gpus": str},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["system_samples"].create_index(["run_id", "iteration", "stage", "ts"])


MIGRATIONS = [_v1, _v2, _v3, _v4, _v5, _v6]
SCHEMA_VERSION = len(MIGRATIONS)
ROW_KEYS = {"metrics": ("run_id", "checkpoint", "task", "metric"),
            "layer_stats": ("run_id", "iteration", "checkpoint", "layer"),
            "verdicts": ("run_id", "iteration", "checkpoint")}  # MIGRATIONS[i] brings the schema from version i to i + 1


class Store(RunQueries):
    def __init__(self, home: Path):
        self.home = Path(home)
        problem = write_problem(self.home)
        if problem:  # said before a write fails as sqlite's "attempt to write a readonly database"
            raise RunStateError(problem)
        with private_files():  # the home, imm.db and its -wal / -shm files: owner only
            self.home.mkdir(parents=True, exist_ok=True)
            self.db = sqlite_utils.Database(db_path(self.home))
            try:
                self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:  # before WAL: a newer imm's database is left as it is
                    # Readers still list its runs (what they do not know reads as empty).
                    raise BrokenStateError(f"{db_path(self.home)} has schema version {version}, newer than this imm's "
                                           f"{SCHEMA_VERSION}: a newer imm wrote it; upgrade imm to write to it "
                                           "(nothing was changed)")
                self.db.enable_wal()
                # Set, not left to the build's default (SQLITE_DEFAULT_WAL_SYNCHRONOUS may make it
                # NORMAL): in WAL mode NORMAL may lose the last commits on a power loss; FULL fsyncs
                # the WAL at every commit, so a stage marked done stays done.
                self.db.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
                self._migrate(version)
            except sqlite3.DatabaseError as exc:
                self.db.close()
                raise BrokenStateError(f"{db_path(self.home)}: not a readable imm database ({exc}); "
                                       "nothing was written") from None

    @classmethod
    def another_connection(cls, home: Path) -> "Store":
        """A second connection to an existing index for a thread of the engine process (the
        system history): no migration, and no umask change (the files exist; the umask is the
        process's, shared with the stage's thread)."""
        store = cls.__new__(cls)
        store.home = Path(home)
        store.db = sqlite_utils.Database(db_path(store.home))
        store.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        store.db.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        return store

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, all or nothing, begun IMMEDIATE: it takes the write lock at its
        start, waiting up to the busy timeout. sqlite-utils' atomic() begins a deferred one, which
        reads under a snapshot and fails at its first write with "database is locked", at once and
        whatever the timeout, when another connection committed in between (WAL's BUSY_SNAPSHOT:
        the system-history thread, a sweep, `imm stop`); a stage failed so under load. Nested: a
        savepoint of the open one."""
        if self.db.conn.in_transaction:
            with self.db.atomic():
                yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.conn.rollback()
            raise
        self.db.conn.commit()

    def _migrate(self, version: int) -> None:
        for target in range(version, len(MIGRATIONS)):
            with self.transaction():
                MIGRATIONS[target](self.db)
                self.db.execute(f"PRAGMA user_version = {target + 1}")

    # ------------------------------------------------------------ runs
    def create_run(self, run: dict, plan: Sequence[tuple[int, str]]) -> None:
        """Insert a run and its whole stage plan in one transaction."""
        with self.transaction():
            self.db["runs"].insert({**run, "created": now(), "updated": now()})
            self.db["stages"].insert_all(
                {"run_id": run["id"], "ord": i, "iteration": it, "stage": st, "status": StageStatus.PENDING}
                for i, (it, st) in enumerate(plan)
            )

    def query(self, sql: str, args: tuple | list = ()) -> list[dict]:
        return list(self.db.query(sql, args))

    def update_run(self, run_id: str, **fields) -> None:
        with self.transaction():
            self.db["runs"].update(run_id, {**fields, "updated": now()})

    # ------------------------------------------------------------ stages
    def set_stage(self, run_id: str, iteration: int, stage: str, **fields) -> None:
        with self.transaction():
            self.db["stages"].update((run_id, iteration, stage), fields)

    def start_stage(self, run_id: str, iteration: int, stage: str) -> None:
        """Mark a stage running from now, adding what its earlier attempt took to `spent`: until
        it was stopped (ended), or, for an engine killed in it, until its last progress row."""
        with self.transaction():
            row = self.db["stages"].get((run_id, iteration, stage))
            spent = row.get("spent") or 0.0
            if row["started"] is not None:
                end = row["ended"]
                if end is None:
                    last = self.db.execute("SELECT updated FROM progress WHERE run_id = ? AND iteration = ? AND stage = ?",
                                           [run_id, iteration, stage]).fetchone()
                    end = last[0] if last and last[0] is not None else row["started"]
                spent += max(end - row["started"], 0.0)
            self.db["stages"].update((run_id, iteration, stage), {"status": StageStatus.RUNNING, "started": now(),
                                                                  "ended": None, "error": None, "spent": spent})

    def finish_stage(self, run_id: str, iteration: int, stage: str, artifact: str = "",
                     info: dict | None = None, rows: dict[str, list[dict]] | None = None) -> None:
        """Record a stage's rows (table -> rows: metrics, layer_stats, verdicts) and mark it done
        in one transaction: all or nothing."""
        with self.transaction():
            for table, table_rows in (rows or {}).items():
                if table_rows:
                    self.db[table].upsert_all([{"run_id": run_id, **r} for r in table_rows], pk=ROW_KEYS[table])
            self.db["stages"].update(
                (run_id, iteration, stage),
                {"status": StageStatus.DONE, "ended": now(), "artifact": artifact, "info": json.dumps(info or {}), "error": None},
            )

    # ------------------------------------------------------------ metrics
    # ------------------------------------------------------------ progress inside a stage
    def set_progress(self, run_id: str, iteration: int, stage: str, **fields) -> None:
        """Upsert the stage's progress row (callers coalesce: see progress.ProgressReporter)."""
        with self.transaction():
            self.db["progress"].upsert({"run_id": run_id, "iteration": iteration, "stage": stage, **fields,
                                        "updated": now()}, pk=("run_id", "iteration", "stage"))

    # ------------------------------------------------------------ curves and system history
    def record_sft_steps(self, run_id: str, iteration: int, rows: list[dict]) -> None:
        """Store optimizer steps of iteration t's SFT in one transaction. A step stored before
        (a resumed stage runs again the steps after its checkpoint) is replaced: one row a step."""
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO sft_steps (run_id, iteration, step, loss, lr, grad_norm, tokens, tokens_per_s, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, iteration, r["step"], r["loss"], r["lr"], r["grad_norm"], r["tokens"], r["tokens_per_s"], r["ts"])
                 for r in rows])

    def trim_sft_steps(self, run_id: str, iteration: int, after: int) -> None:
        """Forget iteration t's steps after `after` (SFT starts, or resumes from step `after`)."""
        with self.db.conn:
            self.db.execute("DELETE FROM sft_steps WHERE run_id = ? AND iteration = ? AND step > ?",
                            [run_id, iteration, after])

    def add_system_samples(self, run_id: str, iteration: int, stage: str, rows: list[dict]) -> None:
        with self.db.conn:
            self.db["system_samples"].insert_all(
                {"run_id": run_id, "iteration": iteration, "stage": stage, **r} for r in rows)

    def count_system_samples(self, run_id: str, iteration: int, stage: str) -> int:
        return self.db.execute("SELECT count(*) FROM system_samples WHERE run_id = ? AND iteration = ? AND stage = ?",
                               [run_id, iteration, stage]).fetchone()[0]

    def thin_system_samples(self, run_id: str, iteration: int, stage: str) -> None:
        """Drop every other sample of a stage (the second, fourth, ...): a long stage keeps its
        whole span at half the resolution."""
        with self.db.conn:
            self.db.execute(
                "DELETE FROM system_samples WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER (ORDER BY ts, id) AS n "
                "FROM system_samples WHERE run_id = ? AND iteration = ? AND stage = ?) WHERE n % 2 = 0)",
                [run_id, iteration, stage])

    # ------------------------------------------------------------ sweeps: a queue of trials
    def queue_trials(self, run_id: str, iteration: int, specs: list[dict]) -> list[int]:
        """Queue trials (alpha, drop_rate, seed, subset, keep_weights) for the sweep worker."""
        ids = []
        with self.transaction():
            for spec in specs:
                row = {"run_id": run_id, "iteration": iteration, "alpha": spec["alpha"], "drop_rate": spec["drop_rate"],
                       "seed": spec["seed"], "subset": spec["subset"], "weights": "keep" if spec["keep_weights"] else None,
                       "status": TrialStatus.QUEUED, "adopted": 0, "created": now()}
                ids.append(self.db["sweeps"].insert(row).last_pk)
        return ids

    def claim_trial(self, run_id: str) -> dict | None:
        """The oldest queued trial of the run, marked running; None when the queue is empty."""
        with self.transaction():
            rows = list(self.db["sweeps"].rows_where("run_id = ? AND status = 'queued'", [run_id], order_by="id", limit=1))
            if not rows:
                return None
            self.db["sweeps"].update(rows[0]["id"], {"status": TrialStatus.RUNNING})
        return {**rows[0], "status": TrialStatus.RUNNING}

    def finish_trial(self, trial_id: int, results: list[dict], seconds: float, weights: str | None) -> None:
        with self.transaction():
            self.db["sweeps"].update(trial_id, {"status": "done", "results": json.dumps(results), "seconds": seconds,
                                                "weights": weights, "error": None})

    def fail_trial(self, trial_id: int, error: str) -> None:
        with self.transaction():
            self.db["sweeps"].update(trial_id, {"status": TrialStatus.FAILED, "error": error})

    def requeue_running_trials(self, run_id: str) -> None:
        """Trials a killed worker left running go back to the queue."""
        with self.transaction():
            self.db.execute("UPDATE sweeps SET status = 'queued' WHERE run_id = ? AND status = 'running'", [run_id])

    def adopt_trial(self, run_id: str, iteration: int, trial_id: int, merge_info: dict,
                    merge_metrics: list[dict], reset: list[tuple[int, str]]) -> None:
        """Make a trial the iteration's merge in one transaction: its merge stage info and metrics
        change; the `reset` stages (all that depend on the merge) go back to pending, and the rows
        they wrote (later iterations' metrics, this and later iterations' diagnostics) go."""
        with self.transaction():
            self.db.execute("UPDATE sweeps SET adopted = (id = ?) WHERE run_id = ? AND iteration = ?",
                            [trial_id, run_id, iteration])
            self.db["stages"].update((run_id, iteration, Stage.MERGE), {"info": json.dumps(merge_info)})
            self.db.execute("DELETE FROM metrics WHERE run_id = ? AND (checkpoint = ? OR iteration > ?)",
                            [run_id, str(Checkpoint.merge(iteration)), iteration])
            self.db["metrics"].insert_all([{"run_id": run_id, **m} for m in merge_metrics])
            for table in ("layer_stats", "verdicts", "progress"):
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ? AND iteration >= ?", [run_id, iteration])
            self.db.execute("DELETE FROM sft_steps WHERE run_id = ? AND iteration > ?", [run_id, iteration])
            for it, stage in reset:
                self.db["stages"].update((run_id, it, stage), {"status": StageStatus.PENDING, "started": None, "ended": None,
                                                               "error": None, "info": None, "artifact": None})
            self.db["runs"].update(run_id, {"status": RunStatus.STOPPED if reset else RunStatus.DONE, "updated": now()})
