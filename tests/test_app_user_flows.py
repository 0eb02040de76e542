"""What a new user met in the app (issue 16), each pinned by the keys or the command they used:
the dry run that crashed the app, a crash's exit status, no terminal, export onto an existing
file, More against the visible fields, adopted trials marked everywhere, preset switching and
saving, a deleted run folder, a read-only home, emoji and bidirectional controls."""
from __future__ import annotations

import json
import os
import pty
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from textual import events

from app_fixtures import RUN_DONE, freeze_clock, make_snapshot_home
from app_helpers import screen_text, until
from engine import api
from engine.errors import RunStateError
from engine.runstate.store import Store
from imm_tui.app import ImmApp
from imm_tui.cli import main
from imm_tui.panes.config import ConfigPane
from imm_tui.screens.export import CHOICES, HINT, ExportScreen
from imm_tui.screens.new_run import NewRunScreen, field_id
from imm_tui.screens.runs import RunsScreen
from imm_tui.widgets.dialogs import ConfirmScreen, PresetNameScreen

pytestmark = pytest.mark.anyio
SIZE = (120, 30)
IMM = Path(sys.executable).parent / "imm"


@pytest.fixture
def snap_home(tmp_path, monkeypatch) -> Path:
    freeze_clock(monkeypatch)
    return make_snapshot_home(tmp_path / "home")


@pytest.fixture(autouse=True)
def user_presets(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("IMM_PRESETS_DIR", str(tmp_path / "user-presets"))
    return tmp_path / "user-presets"


async def runs_screen(pilot) -> RunsScreen:
    return await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.runs
                       and pilot.app.screen, what="the runs table")


async def new_run_form(pilot) -> NewRunScreen:
    await pilot.press("n")
    return await until(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen) and pilot.app.screen.config
                       and not pilot.app.screen.errors and "stages" in str(pilot.app.screen.query_one("#dry-run").render())
                       and pilot.app.screen, what="the form and its plan")


def error_under(screen: NewRunScreen, path: str) -> str:
    box = screen.query_one("#e-" + field_id(path))
    return str(box.render()) if box.display else ""


# ---------------------------------------------------------------- crashes and processes

async def test_dry_run_key_then_escape_leaves_the_app_running(tmp_path):
    """ctrl+d used to arm a zero-delay timer whose task raised ZeroDivisionError when the screen
    closed (textual#6370), ending the app."""
    app = ImmApp(tmp_path / "home")
    async with app.run_test(size=SIZE) as pilot:
        screen = await new_run_form(pilot)
        screen.query_one("#dry-run").update("")
        await pilot.press("ctrl+d")
        await until(pilot, lambda: "stages" in str(screen.query_one("#dry-run").render()), what="the dry run's plan")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
        await pilot.pause()  # the closed screen's timers are cancelled by now: where #6370 would raise
        await app.workers.wait_for_complete()
        assert app.is_running and app._exception is None


async def test_an_unhandled_error_writes_its_traceback_and_gives_status_1(tmp_path):
    app = ImmApp(tmp_path / "home")
    tmp_path.joinpath("home").mkdir()
    with pytest.raises(ZeroDivisionError):
        async with app.run_test(size=SIZE) as pilot:
            await runs_screen_or_welcome(pilot)
            app.call_later(lambda: 1 / 0)
            await until(pilot, lambda: app._exception is not None, what="the error")
    assert app.return_code == 1
    report = app.crash_report
    assert report is not None and report.parent == tmp_path / "home"
    assert "ZeroDivisionError" in report.read_text() and stat.S_IMODE(report.stat().st_mode) == 0o600


async def runs_screen_or_welcome(pilot):
    return await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen, what="the runs screen")


def test_imm_exits_non_zero_after_a_crash_and_says_where_the_traceback_is(tmp_path):
    """The app in a real terminal (a pty) whose first screen raises: exit status 1, and stderr names
    the traceback file."""
    home = tmp_path / "home"
    home.mkdir()
    crash = ("import sys; from imm_tui.screens.runs import RunsScreen\n"
             "RunsScreen.on_mount = lambda self: 1 / 0\n"
             "from imm_tui.cli import main; sys.exit(main(sys.argv[1:]))\n")
    leader, follower = pty.openpty()
    proc = subprocess.run([sys.executable, "-c", crash, "--home", str(home)], stdin=follower, stdout=follower,
                          stderr=subprocess.PIPE, text=True, timeout=60, env={**os.environ, "TERM": "xterm"})
    os.close(follower)
    os.close(leader)
    assert proc.returncode == 1
    [report] = home.glob("imm-crash-*.txt")
    assert f"its traceback is in {report}" in proc.stderr
    assert "ZeroDivisionError" in report.read_text()


def test_imm_without_a_terminal_refuses_at_once(tmp_path):
    proc = subprocess.run([str(IMM), "--home", str(tmp_path / "home")], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "needs a terminal" in proc.stderr and "imm ls" in proc.stderr


# ---------------------------------------------------------------- export

async def open_export(pilot, home: Path) -> ExportScreen:
    await runs_screen(pilot)
    pilot.app.export_run(RUN_DONE)
    return await export_screen(pilot)


async def export_screen(pilot) -> ExportScreen:
    return await until(pilot, lambda: isinstance(pilot.app.screen, ExportScreen) and pilot.app.screen.query_one("#export-path")
                       and pilot.app.screen, what="the export dialog")


def set_path(screen: ExportScreen, path: Path) -> None:
    screen.query_one("#export-path").value = str(path)


async def test_export_asks_before_replacing_a_file_and_keeps_it_on_no(snap_home, tmp_path):
    target = tmp_path / "notes.md"
    target.write_text("IMPORTANT DATA\n")
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, snap_home)
        set_path(screen, target)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await until(pilot, lambda: "kept" in str(screen.query_one("#export-result").render()), what="kept")
        assert target.read_text() == "IMPORTANT DATA\n"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the question again")
        await pilot.press("y")
        await until(pilot, lambda: "wrote" in str(screen.query_one("#export-result").render()), what="written")
        assert target.read_text().startswith("| checkpoint |")


async def test_export_takes_the_format_from_the_extension_and_enter_writes(snap_home, tmp_path):
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, snap_home)  # Markdown chosen, the choice focused
        set_path(screen, tmp_path / "results.csv")
        await until(pilot, lambda: CHOICES[screen.choice][:2] == ("results", "csv"), what="the extension's format chosen")
        await pilot.press("enter")  # enter on the choice writes (the hint says so)
        await until(pilot, lambda: (tmp_path / "results.csv").exists(), what="the CSV file")
        assert (tmp_path / "results.csv").read_text().startswith("checkpoint,")
        await pilot.press("down", "down")  # the arrows choose, from CSV (the .csv path chose it): layer data
        assert screen.choice == 3 and [b.value for b in screen.query("#export-choice RadioButton")] == [False] * 3 + [True] + [False] * 2
        set_path(screen, tmp_path / "layers.json")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: ".json" in str(screen.query_one("#export-result").render()), what="the mismatch")
        assert "allowed: a .csv path" in str(screen.query_one("#export-result").render())
        assert not (tmp_path / "layers.json").exists()


def send_together(pilot, keys: list[str]) -> None:
    """Keys handed to the app as a terminal's driver hands them, all before it handles the first
    (as they queue up on a busy machine); pilot.press waits for each."""
    names = {"/": "slash", ".": "full_stop", "-": "minus", "_": "underscore"}
    for key in keys:
        event = events.Key(names.get(key, key), key if len(key) == 1 else None)
        event.set_sender(pilot.app)
        pilot.app._driver.send_message(event)


async def test_export_path_keys_sent_together_apply_in_the_order_typed(snap_home, tmp_path):
    """End, ctrl+u, a path and enter arriving together: ctrl+u empties the field before the path is
    typed and enter writes that path. Textual ran an Input's bound keys only once they had bubbled
    up to the app, after the characters behind them: ctrl+u deleted the typed path, enter found an
    empty field (textual#6605; seen in tmux under load)."""
    async with ImmApp(snap_home).run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot, snap_home)
        path = screen.query_one("#export-path")
        await pilot.press("tab")
        await until(pilot, lambda: pilot.app.focused is path, what="the path focused")
        typed = tmp_path / "r.md"
        send_together(pilot, ["end", "ctrl+u", *str(typed), "enter"])
        await until(pilot, lambda: str(screen.query_one("#export-result").render()) != HINT, what="an answer")
        assert path.value == str(typed)
        assert str(screen.query_one("#export-result").render()) == f"wrote {typed}"


async def test_export_focus_and_chosen_format_are_seen_without_colour(snap_home, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    async with ImmApp(snap_home).run_test(size=(80, 24)) as pilot:
        screen = await open_export(pilot, snap_home)
        choice, path = screen.query_one("#export-choice"), screen.query_one("#export-path")

        def top_left(widget) -> str:  # the corner of the widget's border, as the terminal shows it
            return screen_text(pilot.app).splitlines()[widget.region.y][widget.region.x]

        def dots() -> list[bool]:
            lines = screen_text(pilot.app).splitlines()
            return [f"▐●▌ {label}" in line for line in lines for *_, label in CHOICES if label in line]

        await until(pilot, lambda: pilot.app.focused is choice and top_left(choice) == "┏", 5, "the choice focused")
        assert top_left(path) == "╭"
        assert dots() == [True] + [False] * 5  # Markdown chosen: only its dot
        await pilot.press("down")
        await until(pilot, lambda: dots() == [False, True] + [False] * 4, 5, "CSV chosen")
        await pilot.press("tab")
        await until(pilot, lambda: pilot.app.focused is path and top_left(path) == "┏", 5, "the path focused")
        assert top_left(choice) == "╭"


# ---------------------------------------------------------------- the new-run form

async def test_more_entry_for_a_visible_field_is_refused_under_more(tmp_path):
    async with ImmApp(tmp_path / "home").run_test(size=SIZE) as pilot:
        screen = await new_run_form(pilot)
        screen.query_one("#" + field_id("extra")).value = "merge.alpha=0.3; sft.warmup=7"
        await until(pilot, lambda: len(screen.errors) == 2, what="two errors")
        more = error_under(screen, "extra")
        assert "merge.alpha: got '0.3'; allowed: set in its own field above (Merge alpha)" in more
        assert "sft.warmup: got 7" in more
        assert error_under(screen, "merge.alpha") == ""
        assert "merge.alpha=0.3" not in screen.overrides()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: any("Fix" in n.message for n in pilot.app._notifications), what="the refusal")
        assert isinstance(pilot.app.screen, NewRunScreen) and not (tmp_path / "home").exists()


async def test_switching_preset_after_edits_asks_and_carries_nothing(tmp_path):
    async with ImmApp(tmp_path / "home").run_test(size=SIZE) as pilot:
        screen = await new_run_form(pilot)
        first = screen.preset
        screen.query_one("#" + field_id("seed")).value = "7"
        screen.query_one("#" + field_id("extra")).value = "sft.warmup=0.2"
        other = str(api.bundled_presets_dir() / "tiny-arith-vanilla.toml")
        screen.query_one("#preset").value = other
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await until(pilot, lambda: pilot.app.screen is screen, what="the form")
        assert screen.preset == first and screen.query_one("#preset").value == first
        assert screen.query_one("#" + field_id("seed")).value == "7"
        screen.query_one("#preset").value = other
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await until(pilot, lambda: screen.config and screen.config["method"] == "vanilla", what="the other preset")
        assert screen.query_one("#" + field_id("extra")).value == "" and screen.edited() == []
        assert screen.query_one("#" + field_id("seed")).value == str(screen.config["seed"])


async def test_escape_with_edits_asks_first(tmp_path):
    async with ImmApp(tmp_path / "home").run_test(size=SIZE) as pilot:
        screen = await new_run_form(pilot)
        screen.query_one("#" + field_id("seed")).value = "7"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await until(pilot, lambda: pilot.app.screen is screen, what="the form, edits kept")
        assert screen.query_one("#" + field_id("seed")).value == "7"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="the runs screen")


async def test_save_preset_keeps_the_dialog_on_a_bad_name_and_saves_x_toml_private(tmp_path, user_presets):
    async with ImmApp(tmp_path / "home").run_test(size=SIZE) as pilot:
        screen = await new_run_form(pilot)
        await pilot.press("ctrl+s")
        dialog = await until(pilot, lambda: isinstance(pilot.app.screen, PresetNameScreen) and pilot.app.screen, what="dialog")
        for bad in ("名字", "a" * 65):
            dialog.query_one("#prompt").value = bad
            dialog.query_one("#prompt-error").update("")
            await pilot.press("enter")
            await until(pilot, lambda: "preset name: got" in str(dialog.query_one("#prompt-error").render()),
                        what="the name's error")
            assert pilot.app.screen is dialog and dialog.query_one("#prompt").value == bad
        dialog.query_one("#prompt").value = "x.toml"
        await pilot.press("enter")
        await until(pilot, lambda: (user_presets / "x.toml").exists(), what="the saved preset")
        assert pilot.app.screen is screen
    assert sorted(p.name for p in user_presets.iterdir()) == ["x.toml"]
    assert stat.S_IMODE((user_presets / "x.toml").stat().st_mode) == 0o600
    with pytest.raises(Exception, match="preset name"):
        api.save_preset("名字", api.bundled_presets_dir() / "tiny-arith.toml", folder=user_presets)
    # the rule is imm run's: the saved name runs
    assert api.validate(user_presets / "x.toml") == []


async def test_an_emoji_or_cjk_value_is_shown_back_as_typed(tmp_path):
    async with ImmApp(tmp_path / "home").run_test(size=SIZE) as pilot:
        screen = await new_run_form(pilot)
        screen.query_one("#" + field_id("model.path")).value = "😀"
        screen.query_one("#" + field_id("tasks.id")).value = "名字" * 30
        await until(pilot, lambda: len(screen.errors) == 2, what="two errors")
        assert "model.path: got '😀'" in error_under(screen, "model.path")
        assert "名字名字" in error_under(screen, "tasks.id")
        assert "\\u" not in error_under(screen, "model.path") + error_under(screen, "tasks.id")


def test_bidirectional_controls_are_shown_like_other_control_characters():
    text = "answer \u202e42\u2066x\u2069 done"
    assert api.clean(text) == "answer \ufffd42\ufffdx\ufffd done"
    assert "\u202e" not in api.json_line({"q": text}) and json.loads(api.json_line({"q": text}))["q"] == text


# ---------------------------------------------------------------- adopted trials

def adopt_in_fixture(home: Path) -> None:
    """Trial 1 of RUN_DONE (alpha 0.3, p 0.1) made Merge1 through the engine's writer, as
    `imm sweep --adopt` records it (Merge1's metrics are the trial's)."""
    store = Store(home)
    rows = [{"checkpoint": "merge1", "iteration": 1, **r} for r in
            json.loads(next(t for t in store.trials(RUN_DONE, 1) if t["id"] == 1)["results"])]
    store.adopt_trial(RUN_DONE, 1, 1, {"alpha": 0.3, "drop_rate": 0.1, "seed": 0, "mode": "uniform",
                                        "adopted_trial": 1}, rows, [])
    store.db.conn.close()


MARK = "adopted trial 1 (alpha 0.3, p 0.1)"


def test_imm_show_marks_an_adopted_trial_in_every_format(snap_home, capsys):
    adopt_in_fixture(snap_home)
    outputs = {}
    for fmt in ("table", "md", "csv", "json"):
        assert main(["show", RUN_DONE, "--home", str(snap_home), "--format", fmt]) == 0
        outputs[fmt] = capsys.readouterr().out
    for fmt in ("table", "md", "csv"):
        [merge1] = [line for line in outputs[fmt].splitlines() if line.lstrip("| ").startswith("Merge1")
                    and "Merge1 is" not in line]
        assert MARK in merge1, fmt
    assert "Merge1 is adopted trial 1" in outputs["table"]
    data = json.loads(outputs["json"])
    assert data["adopted"] == [{"checkpoint": "merge1", "iteration": 1, "trial": 1, "alpha": 0.3, "drop_rate": 0.1,
                                "seed": 0}]
    assert [a.text for a in api.run_detail(RUN_DONE, snap_home).adoptions] == [MARK]
    assert {r.adopted.trial for r in api.results(RUN_DONE, snap_home) if r.checkpoint == "merge1"} == {1}


async def test_config_results_and_export_screens_mark_an_adopted_trial(snap_home, tmp_path):
    adopt_in_fixture(snap_home)
    async with ImmApp(snap_home).run_test(size=(160, 40)) as pilot:
        await runs_screen(pilot)
        pilot.app.open_run(RUN_DONE)
        await pilot.pause(0.2)
        await pilot.press("6")
        config = await until(pilot, lambda: pilot.app.screen.query_one(ConfigPane).config and pilot.app.screen.query_one(ConfigPane),
                             10, "the config")
        assert f"# Merge1 is {MARK}" in config.query_one("#config-toml").text
        await pilot.press("3")
        await until(pilot, lambda: f"Merge1† {MARK}" in screen_text(pilot.app), what="the results note")
        assert "Merge1†" in screen_text(pilot.app)
        pilot.app.export_run(RUN_DONE)
        export = await export_screen(pilot)
        for name in ("r.md", "r.csv", "r.json"):
            set_path(export, tmp_path / name)
            await pilot.press("ctrl+s")
            await until(pilot, lambda: (tmp_path / name).exists(), 10, name)
    assert MARK in (tmp_path / "r.md").read_text() and MARK in (tmp_path / "r.csv").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["adopted"][0]["alpha"] == 0.3


# ---------------------------------------------------------------- damage said in words

async def test_a_deleted_run_folder_shows_as_missing_and_refuses_work(snap_home, capsys):
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        screen = await runs_screen(pilot)
        folder = next(r.run_dir for r in screen.runs if r.id == RUN_DONE)
        shutil.rmtree(folder)
        await until(pilot, lambda: next(r.status for r in screen.runs if r.id == RUN_DONE) == "missing", what="missing")
        pilot.app.open_run(RUN_DONE)
        await until(pilot, lambda: "its folder is gone:" in screen_text(pilot.app), what="the run header")
    assert main(["ls", "--home", str(snap_home)]) == 0
    assert any(RUN_DONE in line and "missing" in line for line in capsys.readouterr().out.splitlines())
    assert main(["show", RUN_DONE, "--home", str(snap_home)]) == 0
    assert "status missing" in capsys.readouterr().out
    before = len(api.trials(RUN_DONE, home=snap_home))
    with pytest.raises(RunStateError, match="is gone"):
        api.start_sweep(RUN_DONE, 1, [0.2], [0.0], home=snap_home)
    assert len(api.trials(RUN_DONE, home=snap_home)) == before  # nothing queued


def mount_read_only_copy(source: Path, at: Path) -> bool:
    at.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(at)], capture_output=True).returncode:
        return False
    shutil.copytree(source, at, dirs_exist_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(at)], check=True)
    return True


@pytest.fixture
def read_only_home(snap_home, tmp_path):
    at = tmp_path / "ro-home"
    if os.geteuid() != 0:  # an ordinary user cannot write a file of mode 444
        os.chmod(snap_home / "imm.db", 0o444)
        yield snap_home
        return
    if not mount_read_only_copy(snap_home, at):
        pytest.skip("root here, and mount is not permitted: no way to make a read-only database")
    try:
        yield at
    finally:
        subprocess.run(["umount", "--lazy", str(at)], capture_output=True)  # the reader may still hold imm.db open


async def test_a_read_only_database_is_said_in_words_before_a_new_run(read_only_home):
    async with ImmApp(read_only_home).run_test(size=SIZE) as pilot:
        await runs_screen(pilot)
        said = [n.message for n in pilot.app._notifications]
        assert any("read-only" in m and str(read_only_home) in m for m in said), said
        await pilot.press("n")
        await pilot.pause(0.2)
        assert isinstance(pilot.app.screen, RunsScreen)  # no form that could not be launched
    with pytest.raises(RunStateError, match="read-only"):
        Store(read_only_home)
