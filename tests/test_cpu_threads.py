"""CPU threads on a shared machine (engine.cpu_threads): the short OpenMP wait reaches every engine
process before torch loads, `threads = auto` sees a competing process, the setting is validated,
and the engine log says what it chose."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from engine import api
from engine.config import resolve
from engine.errors import ConfigError
from engine.cpu_threads import CoreWatch, choose_threads, with_wait_policy
from engine.runstate.launcher import engine_command
from engine.train.deepspeed_launcher import child_env

from conftest import PROJECT, TINY_PRESET, imm


def env_without(*names: str) -> dict:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_importing_the_engine_changes_no_environment_and_an_engine_process_sets_the_short_wait():
    def py(code: str, env: dict) -> list[str]:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                              cwd=PROJECT).stdout.split()

    imports = "import os; e = dict(os.environ); import engine, engine.api, engine.driver, engine.config; print(e == dict(os.environ))"
    assert py(imports, env_without("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")) == ["True"]
    probe = ("import os, sys, engine.driver; torch_before = 'torch' in sys.modules; engine.driver.engine_process_env(); "
             "print(os.environ.get('GOMP_SPINCOUNT'), torch_before)")
    assert py(probe, env_without("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")) == ["1000", "False"]
    assert py(probe, {**env_without("OMP_WAIT_POLICY"), "GOMP_SPINCOUNT": "5"}) == ["5", "False"]
    assert py(probe, {**env_without("GOMP_SPINCOUNT"), "OMP_WAIT_POLICY": "ACTIVE"}) == ["None", "False"]


def test_detached_engine_and_deepspeed_child_get_the_wait_policy():
    assert child_env({"PATH": "/bin"})["GOMP_SPINCOUNT"] == "1000"
    assert child_env({"GOMP_SPINCOUNT": "7"})["GOMP_SPINCOUNT"] == "7"
    assert "GOMP_SPINCOUNT" not in with_wait_policy({"OMP_WAIT_POLICY": "PASSIVE"})
    # What the detached engine process really sees (spawn_detached's environment).
    env = with_wait_policy(env_without("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"))
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ['GOMP_SPINCOUNT'])"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "1000" and engine_command(PROJECT, "r")[1:3] == ["-m", "engine"]


def test_auto_threads_leave_a_core_taken_by_another_process():
    """On one CPU shared with a busy loop, `auto` sees under half a core free and picks 1 thread."""
    code = (
        "import os, subprocess, sys, time\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from engine.cpu_threads import CoreWatch, choose_threads\n"
        "busy = subprocess.Popen([sys.executable, '-c', 'print(flush=True)\\nwhile True: pass'], stdout=subprocess.PIPE)\n"
        "busy.stdout.readline()\n"  # it spins from here on
        "try:\n"
        "    watch = CoreWatch()\n"
        "    first = watch.look()\n"
        "    time.sleep(0.3)\n"  # the window the second look measures, not a wait for something
        "    print(first, watch.look(), *choose_threads('auto', watch))\n"
        "finally:\n"
        "    busy.kill()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env_without("OMP_NUM_THREADS"), capture_output=True,
                         text=True, check=True, cwd=PROJECT).stdout.split()
    first, second, threads = float(out[0]), float(out[1]), int(out[2])
    assert first < 0.5 and second < 0.5, out
    assert threads == 1 and " ".join(out[3:]).endswith("of 1 cores free"), out


def test_fixed_threads_and_omp_num_threads_win_over_auto(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads("auto", CoreWatch()) == (3, "OMP_NUM_THREADS 3")
    assert choose_threads(2, CoreWatch()) == (2, "threads setting 2")
    monkeypatch.delenv("OMP_NUM_THREADS")
    start = time.monotonic()
    threads, why = choose_threads("auto", CoreWatch())
    assert 1 <= threads <= len(os.sched_getaffinity(0)) and why.startswith("auto: ")
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("value, shown, allowed", [
    ("0", "0", '"auto" or a number of threads from 1 to 1024'), ("-1", "-1", "from 1 to 1024"),
    ('"many"', "many", '"auto" or'), ("99999999999999999999", "99999999999999999999", "from 1 to 1024"),
    ("2.5", "2.5", "\"auto\" or a number of threads"), ("true", "True", "\"auto\" or a number of threads"),
])
def test_bad_threads_settings_are_refused(value, shown, allowed):
    with pytest.raises(ConfigError) as err:
        resolve(TINY_PRESET, [f"threads={value}"])
    assert "threads" in str(err.value) and shown in str(err.value) and allowed in str(err.value)


def test_threads_setting_accepted_and_refused_on_the_command_line(tmp_path):
    assert resolve(TINY_PRESET, ["threads=2"]).threads == 2
    assert resolve(TINY_PRESET, ['threads="auto"']).threads == "auto"
    out = imm("run", str(TINY_PRESET), "--set", "threads=0", home=tmp_path)
    assert out.returncode == 2 and "threads" in out.stderr and "auto" in out.stderr
    assert not (tmp_path / "imm.db").exists() and not (tmp_path / "runs").exists()


def test_engine_log_records_the_thread_count(finished_run):
    home, run_id = finished_run
    lines, _ = api.tail_log(run_id, 0, home)
    chosen = [line for line in lines if "cpu threads:" in line]
    expected = os.environ.get("OMP_NUM_THREADS")
    assert chosen, "the engine log does not say how many threads it used"
    if expected:
        assert chosen[0].endswith(f"cpu threads: {expected} (OMP_NUM_THREADS {expected})")
