"""Shared fixtures: the builtin base model (the shipped copy, installed once per session) and run homes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Every engine a test starts uses the same torch thread count: `threads = auto` follows the cores
# other processes leave free, and runs that tests compare bit for bit must not differ in it
# (tests/test_cpu_threads.py covers auto, with OMP_NUM_THREADS removed where it needs to).
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

PROJECT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT.parent / "shared" / "data"
TINY_PRESET = PROJECT / "presets" / "tiny-arith.toml"
# Small enough for a test (seconds per stage), large enough that the filter keeps samples.
FAST = [
    "iterations=1", "tasks.train_size=64", "tasks.eval_size=32", "generation.temperatures=[0.5]",
    "generation.k=1", "generation.max_new_tokens=40", "sft.epochs=1", "sft.batch_size=16", "analyze.when=off",
]


def wait_until(condition, timeout: float = 300, what: str = "the condition", every: float = 0.1):
    """condition()'s first true value, asked every `every` seconds; the timeout only bounds a hang
    (tests wait for what they need, never for a fixed time; app_helpers.until is the Pilot form)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return value


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def nothing_written(parent: Path, out: Path, before: list[str]) -> bool:
    """`out` was not made and nothing else appeared beside it (a temporary folder of any name:
    .out.tmp-PID today); `before` is listing(parent) taken before the command."""
    return not out.exists() and listing(parent) == before


def gguf_stand_ins(folder: Path) -> list[Path]:
    """Empty files where the shipped presets' GGUF model paths point (relative to `folder`, the
    working directory of the test): such a preset validates only once its file is there."""
    from engine.config import load_preset

    made = []
    for preset in sorted((PROJECT / "presets").glob("*.toml")):
        model_path = load_preset(preset).get("model", {}).get("path", "")
        if model_path.endswith(".gguf"):
            (folder / model_path).parent.mkdir(parents=True, exist_ok=True)
            (folder / model_path).touch()
            made.append(folder / model_path)
    return made


@pytest.fixture(scope="session")
def base_models(tmp_path_factory) -> Path:
    """A home's models/ folder holding the builtin tiny-arith base: the shipped copy, installed with
    its sha256 checked, what a user's first run gets (tests/test_builtin_shipped.py trains with the
    build code). Once per session, or once per machine when $IMM_TEST_HOME names a home for it."""
    from engine.train.builtin import ensure_builtin

    home = Path(os.environ["IMM_TEST_HOME"]) if os.environ.get("IMM_TEST_HOME") else tmp_path_factory.mktemp("base-home")
    ensure_builtin(home, "tiny-arith", log=lambda _: None)
    return home / "models"


@pytest.fixture
def home(tmp_path, base_models) -> Path:
    """A fresh home folder that shares the session's built base model."""
    h = tmp_path / "home"
    h.mkdir()
    (h / "models").symlink_to(base_models)
    return h


def imm(*args: str, home: Path | None = None, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (`python -m imm_tui ...`, what `imm` runs)."""
    cmd = [sys.executable, "-m", "imm_tui", *args] + (["--home", str(home)] if home else [])
    env = {**os.environ, **kw.pop("env", {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT, env=env, timeout=kw.pop("timeout", 300), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, base_models) -> tuple[Path, str]:
    """(home, run id) of one real tiny run (1 iteration, diagnostics on), made once per session by
    the real command line. Tests only read it; a test that changes a run copies the home first."""
    h = tmp_path_factory.mktemp("finished-home")
    (h / "models").symlink_to(base_models)
    sets = [a for kv in FAST + ["analyze.when=every", "analyze.limit=32"] for a in ("--set", kv)]
    out = imm("run", str(TINY_PRESET), *sets, home=h, check=True)
    run_id = out.stdout.split()[1]
    return h, run_id


def pytest_collection_modifyitems(config, items):
    """Tests marked slow_under_load load every core themselves for minutes: they run where
    IMM_UNDER_LOAD=1 (benchmarks/under_load.py sets it), not in every run of the suite."""
    if os.environ.get("IMM_UNDER_LOAD") == "1":
        return
    skip = pytest.mark.skip(reason="slow_under_load: runs with IMM_UNDER_LOAD=1 (benchmarks/under_load.py)")
    for item in items:
        if "slow_under_load" in item.keywords:
            item.add_marker(skip)
