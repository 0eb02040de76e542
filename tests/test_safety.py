"""Safety: subprocesses without a shell and with argv no preset value can turn into an option;
trust_remote_code off unless a preset turns it on (and then said by `imm show` and the app); run
folders and the database readable by their owner only, a home others can write refused; model
output and log lines shown as plain text by the CLI and the app."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine import api
from engine.config import resolve
from engine.driver import make_logger
from engine.errors import UserError
from engine.runstate.launcher import engine_command
from engine.runstate.plan import create_run
from engine.runstate.store import Store
from engine.train.deepspeed_launcher import launch_command, write_job
from imm_tui.app import ImmApp
from imm_tui.cli import main

from app_helpers import screen_text, until
from conftest import PROJECT, TINY_PRESET, imm

SOURCES = sorted((PROJECT / "engine").rglob("*.py")) + sorted((PROJECT / "imm_tui").rglob("*.py"))
# Every control character a completion may hold that a terminal would act on.
NASTY = ("[bold red]boom[/bold red] [link=https://x]y[/link] $accent \x1b[2J\x1b[31mred\x1b[0m "
         "\x1b]52;c;ZWNobyBwd25lZA==\x07 \x1b]0;title\x1b\\ \x9b31m back\rover BEL\x07 The answer is 5")
RAW_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# ------------------------------------------------------------------ no shell, no injected options


def test_no_subprocess_goes_through_a_shell():
    offenders = [f"{p.relative_to(PROJECT)}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"shell\s*=|os\.system\(|os\.popen\(|os\.exec\w*\(|getoutput\(|getstatusoutput\(", line)]
    assert offenders == []
    # every subprocess call names its command as a list (a literal, or a variable / call building one)
    calls = [(p.name, node) for p in SOURCES for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"]
    assert len(calls) >= 2
    for name, call in calls:
        assert not isinstance(call.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)), (name, ast.unparse(call))


def test_preset_values_never_become_launcher_options(tmp_path):
    """DeepSpeed's argv holds fixed options, numbers and the job file; the model path (even one
    starting with '-') and every SFT value travel inside the job's JSON."""
    model = tmp_path / "--include=localhost:9;rm -rf ~"
    job = write_job(tmp_path, model, [("q", "a")], resolve(TINY_PRESET).sft, seed=7)
    cmd = launch_command(job, 2, "0,1", 29500)
    assert cmd[:4] == [sys.executable, "-u", "-m", "deepspeed.launcher.runner"]
    values = [a for a in cmd[4:] if not a.startswith("--")]
    assert values == ["29500", "localhost:0,1", "engine.train.deepspeed_worker", str(job)] and Path(cmd[-1]).is_absolute()
    assert json.loads(job.read_text())["init_path"] == str(model) and str(model) not in cmd
    # the engine's own argv: the home is absolute, whatever the user typed
    assert engine_command(api.home_dir("-rf"), "run-1")[4:] == ["run-1", "--home", str(Path.cwd() / "-rf")]


# ------------------------------------------------------------------ trust_remote_code


def test_every_model_loading_call_states_trust_remote_code():
    def loads_code(call: ast.Call) -> bool:  # Auto*.from_pretrained / from_config, vLLM's LLM(...)
        f = call.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            return f.value.id.startswith("Auto") and f.attr in ("from_pretrained", "from_config")
        return isinstance(f, ast.Name) and f.id == "LLM"

    calls = [(p.name, call) for p in SOURCES for call in ast.walk(ast.parse(p.read_text()))
             if isinstance(call, ast.Call) and loads_code(call)]
    assert len(calls) >= 8
    assert [ast.unparse(c) for _, c in calls if "trust_remote_code" not in {k.arg for k in c.keywords}] == []
    assert resolve(TINY_PRESET).model.trust_remote_code is False and resolve(TINY_PRESET).teacher.trust_remote_code is False


def test_checkpoint_code_runs_only_when_the_preset_turns_it_on(tmp_path, base_models):
    """A checkpoint whose config points at its own Python file: loaded with transformers' code by
    default (the file never runs); with trust_remote_code on, its file runs."""
    from engine.models.loading import load_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(next(base_models.glob("tiny-arith*")), ckpt)
    marker = tmp_path / "code-ran"
    (ckpt / "custom_config.py").write_text(
        f"from pathlib import Path\nfrom transformers import LlamaConfig\nPath({str(marker)!r}).touch()\n\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'custom-llama'\n")
    config = json.loads((ckpt / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom_config.CustomConfig"}
    (ckpt / "config.json").write_text(json.dumps(config))
    assert load_model(ckpt, "cpu", None).config.model_type == "llama"  # transformers' own Llama code
    assert not marker.exists()
    try:
        load_model(ckpt, "cpu", None, trust_remote_code=True)
    except Exception:  # noqa: BLE001 - whether the weights then load is beside the point: the code ran
        pass
    assert marker.exists()


@pytest.fixture
def remote_code_home(tmp_path) -> tuple[Path, str, str]:
    """A home with two created runs: one with model.trust_remote_code on, one without."""
    home = tmp_path / "home"
    store = Store(home)
    on, _ = create_run(store, resolve(TINY_PRESET, ["model.trust_remote_code=true", "name=trusting"]), str(TINY_PRESET))
    off, _ = create_run(store, resolve(TINY_PRESET), str(TINY_PRESET))
    return home, on, off


def test_imm_show_says_when_remote_code_is_on(remote_code_home, capsys):
    home, on, off = remote_code_home
    assert main(["show", on, "--home", str(home)]) == 0
    assert "trust_remote_code is on for: model" in capsys.readouterr().out
    assert main(["show", off, "--home", str(home)]) == 0
    assert "trust_remote_code" not in capsys.readouterr().out
    assert api.run_detail(on, home).summary.remote_code == ("model",) and api.run_detail(off, home).summary.remote_code == ()


@pytest.mark.anyio
async def test_the_run_header_and_config_tab_say_when_remote_code_is_on(remote_code_home):
    from imm_tui.screens.run_detail import RunDetailScreen

    home, on, off = remote_code_home
    app = ImmApp(home)
    async with app.run_test(size=(140, 30)) as pilot:
        for run_id, shown in ((on, True), (off, False)):
            app.open_run(run_id)
            await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.detail is not None)
            header = await until(pilot, lambda: " stages" in (t := screen_text(app)) and run_id in t and t, what="the header")
            assert ("trust_remote_code on (model)" in header) is shown
            await pilot.press("6")  # the Config tab
            await until(pilot, lambda: "trust_remote_code = " in screen_text(app))
            assert f"trust_remote_code = {'true' if shown else 'false'}" in screen_text(app)
            await pilot.press("escape")


# ------------------------------------------------------------------ permissions


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_database_and_run_folders_are_private(tmp_path):
    old = os.umask(0o022)  # a usual login umask: what imm must not rely on
    try:
        home = tmp_path / "home"
        run_id, paths = create_run(Store(home), resolve(TINY_PRESET), str(TINY_PRESET))
    finally:
        os.umask(old)
    assert mode(home) == 0o700 and mode(home / "imm.db") == 0o600
    assert mode(paths.root) == 0o700 and mode(paths.config) == 0o600
    assert all(mode(p) == 0o600 for p in home.glob("imm.db*"))
    # the engine process (here it fails at once: a model folder without weights) writes its log privately
    empty = tmp_path / "no-weights"
    empty.mkdir()
    failing, fpaths = create_run(Store(home), resolve(TINY_PRESET, [f"model.path={empty}"]), "x")
    out = subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); from engine.__main__ import main; "
                          f"sys.exit(main(['run', {failing!r}, '--home', {str(home)!r}]))"],
                         capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert out.returncode != 0 and fpaths.log.is_file()
    assert mode(fpaths.log) == 0o600 and all(mode(p) == 0o600 for p in fpaths.root.iterdir() if p.is_file())


def test_a_home_others_can_write_is_refused_everywhere(tmp_path, capsys):
    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o777)
    for argv in (["ls", "--home", str(home)], ["run", str(TINY_PRESET), "--home", str(home)], ["--home", str(home)]):
        assert main(argv) == 2  # the last one is the app
        assert "which others can write to (mode 777)" in capsys.readouterr().err
    engine = subprocess.run([sys.executable, "-m", "engine", "run", "x", "--home", str(home)], capture_output=True,
                            text=True, cwd=PROJECT, timeout=60)
    assert engine.returncode == 2 and f"chmod o-w {home}" in engine.stderr
    with pytest.raises(UserError, match="others can write"):
        ImmApp(home)
    assert list(home.iterdir()) == []
    home.chmod(0o1777)  # sticky, like /tmp: others cannot replace what imm writes
    assert main(["ls", "--home", str(home)]) == 0


# ------------------------------------------------------------------ plain text everywhere


def test_log_lines_are_plain_text_on_the_terminal_and_in_the_file(tmp_path, capsys):
    log = make_logger("plain-test", tmp_path / "engine.log", echo=True)
    log.info(f"[deepspeed] {NASTY}")
    echoed = capsys.readouterr().err
    written = (tmp_path / "engine.log").read_text()
    for text in (echoed, written):
        assert "boom" in text and not RAW_CONTROLS.search(text), repr(text)
        assert "␛]52;c;ZWNobyBwd25lZA==␇" in text and "[bold red]boom[/bold red]" in text


@pytest.fixture
def nasty_run(tmp_path, finished_run) -> tuple[Path, str, Path]:
    """A copy of the finished run whose first generated sample is NASTY."""
    home, run_id = finished_run
    copy = tmp_path / "home"
    shutil.copytree(home, copy, symlinks=True)
    with sqlite3.connect(copy / "imm.db") as db:
        db.execute("UPDATE runs SET run_dir = ?", (str(copy / "runs" / run_id),))
    graded = copy / "runs" / run_id / "iter_1" / "graded.jsonl"
    records = [json.loads(line) for line in graded.read_text().splitlines()]
    records[0]["completion"] = NASTY
    graded.write_text("".join(json.dumps(r) + "\n" for r in records))
    return copy, run_id, graded


def test_the_cli_prints_model_output_as_plain_text(nasty_run, tmp_path):
    home, run_id, graded = nasty_run
    out = imm("grade", "arith_add3", str(graded), timeout=120)
    assert out.returncode == 0 and not RAW_CONTROLS.search(out.stdout + out.stderr)
    first = json.loads(out.stdout.splitlines()[0])
    assert first["completion"] == NASTY and first["extracted"] == "5"  # the same data, escaped as JSON
    bad = imm("grade", "arith_add3", str(tmp_path / f"no{NASTY[:40]}.jsonl"), timeout=120)
    assert bad.returncode == 2 and "no such file" in bad.stderr and not RAW_CONTROLS.search(bad.stderr)


@pytest.mark.anyio
async def test_the_app_shows_model_output_and_log_lines_as_plain_text(nasty_run):
    from imm_tui.panes.samples import SamplesPane
    from imm_tui.screens.run_detail import RunDetailScreen
    from imm_tui.widgets.log_view import TailLog

    home, run_id, _ = nasty_run
    app = ImmApp(home)
    async with app.run_test(size=(160, 40)) as pilot:
        app.open_run(run_id)
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.detail is not None)
        log = app.screen.query_one(TailLog)
        with open(app.screen.detail.log_path, "a") as f:  # the engine logs a line quoting the model
            f.write(f"12:00:00 a line quoting the model: {NASTY}\n")
        await until(pilot, lambda: any("quoting the model" in line for line in log.lines[-3:]), what="the log line")
        shown = await until(pilot, lambda: "quoting the model" in screen_text(app) and screen_text(app), what="the line shown")
        assert "[bold red]boom[/bold red]" in shown and "␛[2J␛[31mred" in shown and not RAW_CONTROLS.search(shown)
        await pilot.press("5")  # Samples: the first generated sample is selected
        pane = app.screen.query_one(SamplesPane)
        await until(pilot, lambda: pane.shown and pane.shown[0].completion == NASTY, what="the samples")
        shown = await until(pilot, lambda: "$accent" in (t := screen_text(app)) and t, what="the sample drawn")
        assert "[link=https://x]y[/link] $accent" in shown and "␛]52;c;ZWNobyBwd25lZA==␇" in shown
        assert not RAW_CONTROLS.search(shown)
