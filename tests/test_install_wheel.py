"""A regular install, as pip, a wheel or pipx makes it: the wheel built from the sources, installed
into a fresh virtual environment outside the checkout, and used from a folder outside it, with no
PYTHONPATH. Its dependencies (torch and the rest) come from this test's environment through a .pth
line, so nothing is downloaded or installed twice; a .pth line adds a folder to sys.path without
running that folder's own .pth files, so this environment's editable install of the checkout does
not come along (test_the_wheel_is_what_runs checks it)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import FAST, PROJECT, wait_until

pytestmark = pytest.mark.slow
SOURCES = ["pyproject.toml", "README.md", "engine", "imm_tui"]  # what setuptools builds the wheel from


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel installed in a fresh venv; returns its bin folder, a working folder outside the
    checkout and the environment to run it with."""
    root = tmp_path_factory.mktemp("wheel-install")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (PROJECT / name).is_dir():
            shutil.copytree(PROJECT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(PROJECT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(src)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = (root / "dist").glob("imm-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "imm-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMP_NUM_THREADS")}
    env["IMM_PRESETS_DIR"] = str(root / "no-user-presets")
    return {"bin": venv / "bin", "site": Path(site), "cwd": elsewhere, "env": env}


def run(installed: dict, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(installed["bin"] / argv[0]), *argv[1:]], cwd=installed["cwd"], env=installed["env"],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_the_wheel_is_what_runs(installed):
    out = run(installed, "python", "-c", "import engine, imm_tui; print(engine.__file__); print(imm_tui.__file__)")
    for line in out.stdout.splitlines():
        assert Path(line).is_relative_to(installed["site"]) and not Path(line).is_relative_to(PROJECT), line


def test_the_wheel_lists_its_bundled_presets(installed):
    out = run(installed, "imm", "presets").stdout
    bundled = {line.split()[0]: line.split()[2] for line in out.splitlines() if " bundled " in f" {line} "}
    assert set(bundled) == {p.stem for p in (PROJECT / "engine" / "presets").glob("*.toml")}
    assert Path(bundled["tiny-arith"]).is_relative_to(installed["site"] / "engine" / "presets")


def test_the_installed_imm_runs_the_default_detached_by_name_with_auto_threads(installed):
    """`imm run tiny-arith --detach` (one iteration, small sizes) from outside the checkout: the
    engine child starts from the installed package, copies the shipped base model out of it, and
    picks its torch threads itself (threads = auto, no OMP_NUM_THREADS)."""
    home = installed["cwd"] / "home"
    sets = [a for kv in FAST for a in ("--set", kv)]
    started = run(installed, "imm", "run", "tiny-arith", *sets, "--detach", "--home", str(home)).stdout
    run_id = started.split()[1]

    def status():
        return json.loads(run(installed, "imm", "show", run_id, "--format", "json", "--home", str(home)).stdout)

    def ls_status():  # `imm ls` says interrupted where the engine is gone
        return next(line.split()[1] for line in run(installed, "imm", "ls", "--home", str(home)).stdout.splitlines()
                    if line.startswith(run_id))

    end = wait_until(lambda: (s := ls_status()) not in ("created", "running") and s, 900, "the run to end", every=1)
    log = (home / "runs" / run_id / "engine.log").read_text()
    assert end == "done", log + (home / "runs" / run_id / "engine.out").read_text()
    assert status()["config"]["threads"] == "auto" and "cpu threads: " in log and "(auto: " in log
    table = run(installed, "imm", "show", run_id, "--home", str(home)).stdout
    assert "Merge1" in table and "arith_add4" in table
