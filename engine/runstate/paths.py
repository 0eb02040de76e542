"""Where things live: the home folder (database + run folders) and one run's folder layout."""
from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from ..errors import BrokenStateError, UserError

DB_NAME = "imm.db"
# What imm creates (home, database, run folders, logs, checkpoints) only its owner may read.
PRIVATE_UMASK = 0o077


def home_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--home DIR, else $IMM_HOME, else ./imm-runs; refused where others could change it."""
    home = Path(explicit or os.environ.get("IMM_HOME") or "imm-runs").expanduser().resolve()
    check_home(home)
    return home


def check_home(home: Path) -> None:
    """A home others can write to (not sticky, like /tmp) lets them replace the database, a
    checkpoint or a preset under a run: refused. A home that is not a folder is refused too."""
    try:
        mode = home.stat().st_mode
    except FileNotFoundError:
        return  # made (private) when the first run is created
    except OSError as exc:
        raise UserError(f"home: got {str(home)!r}; allowed: a folder imm can read ({exc.strerror})") from None
    if not stat.S_ISDIR(mode):
        raise UserError(f"home: got {str(home)!r}, which is not a folder; allowed: a folder (or a path to create one at)")
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise UserError(f"home: got {str(home)!r}, which others can write to (mode {stat.S_IMODE(mode):o}); "
                        f"allowed: a folder only you can write to (chmod o-w {home})")


@contextlib.contextmanager
def private_files():
    """Files and folders made inside are readable by their owner only (umask 077)."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def db_path(home: Path) -> Path:
    return Path(home) / DB_NAME


def write_problem(home: Path) -> str | None:
    """Why this user cannot write the home's database (a read-only file, folder or mount), in
    words naming the file; None when it can (or will be able to create it)."""
    db = db_path(home)
    if db.exists() and not os.access(db, os.W_OK):
        where = db
    elif Path(home).exists() and not os.access(home, os.W_OK):  # its -wal / -shm files and run folders go there
        where = Path(home)
    else:
        return None
    return (f"{where} is read-only for this user (file mode or a read-only mount): its runs can be looked at, "
            "but not started, stopped, resumed or swept here")


def run_paths(home: Path, run_dir: str) -> "RunPaths":
    """A run's paths from its row: run_dir is stored relative to the home (runs/RUN_ID), so a
    copied or moved home still finds its runs; older rows hold absolute paths, which stay as they are."""
    return RunPaths(Path(home) / run_dir)


def require_run_folder(run_id: str, paths: "RunPaths", any_stage_done: bool) -> None:
    """A run folder deleted by hand ends the run (its finished stages' artifacts went with it);
    one whose run has finished nothing yet is simply made again."""
    if paths.root.is_dir():
        return
    if any_stage_done:
        raise BrokenStateError(f"run {run_id}: its folder {paths.root} is gone (moved or deleted by hand?), and with it "
                               "the artifacts of its finished stages; start a new run (the other runs of the home are "
                               "unaffected)")
    with private_files():
        paths.root.mkdir(parents=True)


class RunPaths:
    """Where a run keeps its artifacts: run_dir/{config.json, engine.log, iter_T/{samples.jsonl,
    graded.jsonl, kept.jsonl, sft/, merged/, eval_*.jsonl, importance.json, diagnostics.json},
    sweeps/}; while a stage runs also its resume state (sft_checkpoint.pt, *.jsonl.partial)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.root = Path(run_dir)
        self.config = self.root / "config.json"
        self.log = self.root / "engine.log"
        self.out = self.root / "engine.out"
        self.lock = self.root / "engine.lock"
        self.stop_request = self.root / "STOP"
        self.sweep_log = self.root / "sweep.log"

    def iteration(self, t: int) -> Path:
        return self.root / f"iter_{t}"

    def samples(self, t: int) -> Path:
        return self.iteration(t) / "samples.jsonl"

    def graded(self, t: int) -> Path:
        return self.iteration(t) / "graded.jsonl"

    def kept(self, t: int) -> Path:
        return self.iteration(t) / "kept.jsonl"

    def sft(self, t: int) -> Path:
        return self.iteration(t) / "sft"

    def sft_checkpoint(self, t: int) -> Path:
        """SFT's training checkpoint (engine/train/checkpointing.py), deleted when the stage ends."""
        return self.iteration(t) / "sft_checkpoint.pt"

    def merged(self, t: int) -> Path:
        return self.iteration(t) / "merged"

    def importance(self, t: int) -> Path:
        return self.iteration(t) / "importance.json"

    def diagnostics(self, t: int) -> Path:
        return self.iteration(t) / "diagnostics.json"

    def eval_samples(self, t: int, checkpoint: str) -> Path:
        return self.iteration(t) / f"eval_{checkpoint}.jsonl"

    def sweeps(self, t: int) -> Path:
        return self.root / "sweeps" / f"iter_{t}"
