"""The app shell driven with Pilot: the runs table on a fixed home (statuses, interrupted runs,
filter, open, markup-safe names), help, jump and the command palette, the new-run form's inline
validation (nothing written), and a real detached run launched, stopped, resumed and found again
by a new app."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from app_helpers import screen_text, until
from app_fixtures import MARKUP_NAME, RUN_DONE, RUN_FAILED, RUN_INTERRUPTED, RUN_STOPPED, freeze_clock, make_snapshot_home
from engine import api
from imm_tui.app import ImmApp
from imm_tui.screens.new_run import NewRunScreen
from imm_tui.screens.runs import RunsScreen
from imm_tui.widgets.dialogs import ConfirmScreen

pytestmark = pytest.mark.anyio  # Pilot tests are coroutines (anyio's pytest plugin, asyncio backend)
SIZE = (120, 30)


@pytest.fixture
def snap_home(tmp_path, monkeypatch) -> Path:
    freeze_clock(monkeypatch)
    return make_snapshot_home(tmp_path / "home")


@pytest.fixture(autouse=True)
def no_user_presets(tmp_path, monkeypatch):
    monkeypatch.setenv("IMM_PRESETS_DIR", str(tmp_path / "user-presets"))


async def runs_screen(pilot) -> RunsScreen:
    """The runs screen once its first poll has filled the table."""
    return await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.runs
                       and pilot.app.screen, what="the runs table")


def table_rows(screen: RunsScreen) -> dict[str, dict[str, str]]:
    """Run id -> column key -> the cell's text, for the columns the width leaves in the table."""
    table = screen.query_one("#runs")
    columns = [c.key.value for c in table.ordered_columns]
    return {key.value: dict(zip(columns, map(str, table.get_row(key)))) for key in table.rows}


async def test_runs_table_lists_runs_with_statuses(snap_home):
    async with ImmApp(snap_home).run_test(size=(240, 30)) as pilot:  # wide enough for every column
        screen = await runs_screen(pilot)
        rows = table_rows(screen)
        assert list(rows) == [RUN_INTERRUPTED, RUN_STOPPED, RUN_FAILED, RUN_DONE]  # newest first
        assert {k: r["status"] for k, r in rows.items()} == {RUN_INTERRUPTED: "interrupted", RUN_STOPPED: "stopped",
                                                      RUN_FAILED: "failed", RUN_DONE: "done"}
        done = rows[RUN_DONE]
        assert (done["stage"], done["best_id"], done["best_ood"], done["verdict"]) == ("14/14", "71.0", "20.9", "aligned")
        assert rows[RUN_INTERRUPTED]["name"] == MARKUP_NAME  # markup in a name shows literally
        info = str(screen.query_one("#run-info").render())
        assert "interrupted: its engine" in info and MARKUP_NAME in info
        # The failed run's error shows under the table when its row is highlighted.
        await pilot.press("down", "down")
        assert "CUDA out of memory" in str(screen.query_one("#run-info").render())


async def test_filter_and_marks(snap_home):
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        screen = await runs_screen(pilot)
        await pilot.press("slash", *"vanilla")
        assert list(table_rows(screen)) == [RUN_FAILED]
        await pilot.press("escape")
        assert len(table_rows(screen)) == 4
        await pilot.press("slash", *"stopped", "enter")  # status words filter too; enter back to the table
        assert list(table_rows(screen)) == [RUN_STOPPED]
        await pilot.press("escape", "space")  # the cursor stayed on the run it was on
        assert screen.marked == {RUN_STOPPED}
        assert table_rows(screen)[RUN_STOPPED]["mark"] == "*"
        await pilot.press("c")  # one marked run: compare asks for more
        await until(pilot, lambda: any("two or more" in n.message for n in pilot.app._notifications), what="the ask")
        assert isinstance(pilot.app.screen, RunsScreen)


async def test_runs_table_cells_fit_their_columns_from_the_first_draw_at_80x24(snap_home, monkeypatch):
    """Columns are as wide as their cells when the rows land (not once the table is next idle),
    and at 80 columns the less important columns go, never a digit of a number."""
    from rich.cells import cell_len

    cut: list[str] = []
    draw = RunsScreen.draw

    def checked_draw(screen: RunsScreen) -> None:
        draw(screen)
        table = screen.query_one("#runs")
        for i, column in enumerate(table.ordered_columns):
            room = column.get_render_width(table) - 2 * table.cell_padding
            cut.extend([f"{column.key.value}: {cell.plain!r} in {room}" for cell in table.get_column_at(i)
                        if cell_len(cell.plain) > room])

    monkeypatch.setattr(RunsScreen, "draw", checked_draw)
    async with ImmApp(snap_home).run_test(size=(80, 24)) as pilot:
        screen = await runs_screen(pilot)
        assert not cut, cut
        columns = [c.key.value for c in screen.query_one("#runs").ordered_columns]
        assert {"id", "status", "best_id", "best_ood"} <= set(columns) and "model" not in columns
        text = screen_text(pilot.app)
        assert RUN_DONE in text and " 71.0 " in text and " 20.9 " in text
        assert sum(cell_len(c) for c in text.splitlines()[2]) <= 80
        await pilot.resize_terminal(240, 24)  # wider: the columns left out come back
        await until(pilot, lambda: "model" in [c.key.value for c in screen.query_one("#runs").ordered_columns],
                    what="every column at 240 columns")
        assert not cut, cut


async def test_home_end_and_a_filter_without_matches(snap_home):
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        screen = await runs_screen(pilot)
        await pilot.press("end")
        assert screen.current_id() == RUN_DONE
        await pilot.press("home")
        assert screen.current_id() == RUN_INTERRUPTED
        await pilot.press("slash", *"nothing-like-this")
        await until(pilot, lambda: "No run matches the filter 'nothing-like-this'" in screen_text(pilot.app), what="the note")
        await pilot.press("escape")
        await until(pilot, lambda: "No run matches" not in screen_text(pilot.app), what="the note gone")


async def test_empty_home_hint_keeps_its_command_whole_at_80_columns(tmp_path):
    import tempfile

    # a home path as long as a user's (pytest's tmp_path alone is wider than 80 columns)
    home = Path(tempfile.mkdtemp(prefix="imm-hint-", dir="/tmp")) / "experiments-home"
    async with ImmApp(home).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "imm run" in screen_text(pilot.app), what="the hint")
        lines = [line.strip() for line in screen_text(pilot.app).splitlines()]
        assert f"--home {home}" in lines
        assert "imm run tiny-arith \\" in lines
    home.parent.rmdir()  # the app created nothing in it


async def test_an_empty_home_offers_only_the_keys_that_act_and_the_rest_come_with_the_first_run(tmp_path, monkeypatch):
    freeze_clock(monkeypatch)
    home = tmp_path / "home"
    async with ImmApp(home).run_test(size=(80, 24)) as pilot:
        footer = lambda: screen_text(pilot.app).splitlines()[-1]  # noqa: E731
        await until(pilot, lambda: "imm run" in screen_text(pilot.app), what="the empty home's hint")
        assert "n New" in footer()
        for word in ("Resume", "Stop", "Mark", "Compare", "Export", "Filter"):
            assert word not in footer(), footer()
        await pilot.press("r", "s", "space", "c", "e")
        assert not pilot.app._notifications and isinstance(pilot.app.screen, RunsScreen)
        await pilot.press("question_mark")
        help_text = await until(pilot, lambda: "Keys (escape closes" in (s := screen_text(pilot.app)) and s, what="the keys")
        assert "New" in help_text and "Clear filter" not in help_text and "Resume" not in help_text
        await pilot.press("escape")
        make_snapshot_home(home)  # runs arrive (as from an engine started elsewhere)
        await until(pilot, lambda: "r Resume" in footer() and "space Mark" in footer(), what="the run keys in the footer")


async def test_live_refresh_keeps_the_cursor(snap_home, monkeypatch):
    from engine.runstate.store import Store

    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        screen = await runs_screen(pilot)
        await pilot.press("down", "down", "down")
        assert screen.current_id() == RUN_DONE
        store = Store(snap_home)
        store.db["runs"].update(RUN_STOPPED, {"status": "failed", "error": "disk full"})
        store.db.conn.close()
        await until(pilot, lambda: table_rows(screen)[RUN_STOPPED]["status"] == "failed", what="the refresh")
        assert screen.current_id() == RUN_DONE


async def test_enter_opens_the_run(snap_home):
    from imm_tui.screens.run_detail import RunDetailScreen

    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        await runs_screen(pilot)
        await pilot.press("down", "down", "down", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen), what="the run")
        assert pilot.app.screen.run_id == RUN_DONE
        await pilot.press("colon", *"runs", "enter")  # k9s-style jump back
        await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="the runs")
        await pilot.press("colon", *"run tiny-arith-2026110", "enter")  # ambiguous prefix: a message, no crash
        await until(pilot, lambda: pilot.app._notifications, what="the message")
        await pilot.press("colon", *"run tiny-arith-vanilla", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen), what="the run")
        assert pilot.app.screen.run_id == RUN_FAILED


async def test_help_lists_every_key_of_the_screen(snap_home):
    from imm_tui.screens.help import HelpScreen

    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        await runs_screen(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="the help")
        described = {d for _, d, _ in pilot.app.screen.rows()}
        assert {"Open", "New", "Resume", "Stop", "Mark", "Compare", "Export", "Filter", "Jump", "Quit"} <= described
        rows = {d: (k, w) for k, d, w in pilot.app.screen.rows()}
        assert rows["Quit"] == ("^q, q", "anywhere") and rows["New"][1] == "this screen"
        assert rows["Open"][1] == "table"  # where, in words: no class names
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="the runs")
        pilot.app.open_run(RUN_DONE)
        await until(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == RUN_DONE, what="the run")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="the keys")
        places = {w for _, _, w in pilot.app.screen.rows()}
        assert "Progress tab, focused part" in places or "Progress tab" in places, places
        assert not any(w[0].isupper() and w.endswith(("Screen", "App", "Scroll", "Pane")) for w in places), places


async def test_palette_reaches_every_run_and_action(snap_home):
    from textual.command import CommandInput

    from imm_tui.commands_palette import ImmCommands

    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        await runs_screen(pilot)
        provider = ImmCommands(pilot.app.screen)
        await provider.startup()
        names = [name for name, _, _ in provider.commands()]
        assert {"Runs", "New run", "System", "Keys", "Quit"} <= set(names)
        for run_id in (RUN_DONE, RUN_FAILED, RUN_STOPPED, RUN_INTERRUPTED):
            for verb in ("Open", "Resume", "Stop", "Export"):
                assert f"{verb} run {run_id}" in names
        hits = [hit async for hit in provider.search("open dead")]
        assert hits and hits[0].text == f"Open run {RUN_INTERRUPTED}"
        hits[0].command()
        await until(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == RUN_INTERRUPTED, what="the run")
        # The palette itself opens and lists a run with markup in its name without crashing.
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="the runs")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(pilot.app.focused, CommandInput), what="the palette's input")
        await pilot.press(*"dead")
        await until(pilot, lambda: f"Open run {RUN_INTERRUPTED}" in screen_text(pilot.app), what="the palette's hit")
        await pilot.press("escape")


async def test_stop_is_refused_for_a_run_that_is_not_running(snap_home):
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        await runs_screen(pilot)
        await pilot.press("end", "s")  # the done run
        await until(pilot, lambda: pilot.app._notifications, what="the answer")
        (note,) = list(pilot.app._notifications)
        assert f"{RUN_DONE} is done: no engine runs it, nothing to stop" == note.message
        assert isinstance(pilot.app.screen, RunsScreen)  # nothing asked


async def test_jumping_to_the_run_on_screen_stacks_no_second_screen(snap_home):
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        await runs_screen(pilot)
        pilot.app.open_run(RUN_DONE)
        await until(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == RUN_DONE, what="the run")
        depth = len(pilot.app.screen_stack)
        opened, open_run = [], pilot.app.open_run
        pilot.app.open_run = lambda run_id: (opened.append(run_id), open_run(run_id))
        await pilot.press("colon", *"run tiny-arith-20261101", "enter")
        await until(pilot, lambda: opened == [RUN_DONE], what="the jump's prefix resolved and opened")
        await until(pilot, lambda: pilot.app.screen.run_id == RUN_DONE, what="the prompt closed")
        assert len(pilot.app.screen_stack) == depth


async def test_engine_errors_are_notifications(snap_home):
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        await runs_screen(pilot)
        pilot.app.stop_run(RUN_DONE)  # past the screen's own check: the engine's answer
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await until(pilot, lambda: pilot.app._notifications, what="the answer")
        (note,) = list(pilot.app._notifications)
        assert note.severity == "error" and "is not running" in note.message




def fill(screen: NewRunScreen, values: dict[str, str]) -> None:
    from imm_tui.screens.new_run import field_id

    for path, value in values.items():
        screen.query_one("#" + field_id(path)).value = value


async def new_run_form(pilot) -> NewRunScreen:
    await pilot.press("n")
    screen = await until(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen) and pilot.app.screen.config
                            and pilot.app.screen, what="the form's preset")
    return screen


async def test_new_run_shows_engine_validation_inline_and_writes_nothing(tmp_path):
    home = tmp_path / "empty"
    async with ImmApp(home).run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "imm run tiny-arith" in (w := str(pilot.app.screen.query_one("#welcome").render()))
                    and f"--home {home}" in w, what="the welcome")
        screen = await new_run_form(pilot)
        fill(screen, {"merge.alpha": "2", "merge.drop_rate": "1.0", "generation.k": "0", "tasks.ood": "arith_add4, nosuch"})
        await until(pilot, lambda: len(screen.errors) == 4, what="four errors")

        def error(path: str) -> str:
            from imm_tui.screens.new_run import field_id

            box = screen.query_one("#e-" + field_id(path))
            return str(box.render()) if box.display else ""

        assert "merge.alpha: got 2;" in error("merge.alpha")  # the value as typed (it said 2.0 before the schema)
        assert "merge.drop_rate: got 1.0" in error("merge.drop_rate")
        assert "generation.k: got 0" in error("generation.k")
        assert "tasks.ood[1]: got 'nosuch'" in error("tasks.ood")
        assert error("seed") == ""
        fill(screen, {"merge.alpha": "0.3", "merge.drop_rate": "0.2", "generation.k": "2", "tasks.ood": "arith_add4",
                      "tasks.id": "no_task"})
        await until(pilot, lambda: [e.field for e in screen.errors] == ["tasks.id"], what="one error")
        assert "tasks.id: got 'no_task'" in error("tasks.id") and error("merge.alpha") == ""
        await pilot.press("ctrl+r")  # refused: the errors are named, nothing starts
        await until(pilot, lambda: any("tasks.id" in n.message for n in pilot.app._notifications), what="the refusal")
        fill(screen, {"tasks.id": "arith_add3"})
        await until(pilot, lambda: not screen.errors and "stages" in str(screen.query_one("#dry-run").render()),
                       20, "the dry-run plan")
        assert "p 0.2" in str(screen.query_one("#dry-run").render())
    assert not home.exists()  # validation and the dry run write nothing


def kill(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# More takes only keys without a field of their own (sft.batch_size has one: see the test).
FAST = ["tasks.train_size=64", "tasks.eval_size=32", "generation.max_new_tokens=40", "analyze.limit=32"]


async def test_launch_stop_resume_and_reopen(home):
    started_pids = []
    try:
        async with ImmApp(home).run_test(size=SIZE) as pilot:
            screen = await new_run_form(pilot)
            fill(screen, {"generation.temperatures": "0.5", "sft.epochs": "1", "iterations": "1", "sft.batch_size": "16"})
            screen.query_one("#f-extra").value = "; ".join(FAST)
            await until(pilot, lambda: "stages (8)" in str(screen.query_one("#dry-run").render()), what="the plan")
            await pilot.press("ctrl+r")
            detail = await until(pilot, lambda: getattr(pilot.app.screen, "run_id", None), what="the run's detail")
            run = api.list_runs(home)[0]
            assert run.id == detail and run.pid
            started_pids.append(run.pid)
            config = api.run_detail(run.id, home).config
            assert config["tasks"]["train_size"] == 64 and config["generation"]["temperatures"] == [0.5]

            await pilot.press("escape")  # back to the runs table; stop asks first
            await runs_screen(pilot)
            # the engine marks the run running once started (importing torch takes a while under load)
            await until(pilot, lambda: api.list_runs(home)[0].status == "running", 240, "the engine to start")
            await pilot.press("s")
            await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the question")
            await pilot.press("n")  # no: it keeps running
            await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="the runs")
            assert not (home / "runs" / run.id / "STOP").exists() and api.list_runs(home)[0].status == "running"
            await pilot.press("s", "y")
            await until(pilot, lambda: api.list_runs(home)[0].status == "stopped", 240, "the run to stop")
            await pilot.press("r")
            await until(pilot, lambda: api.list_runs(home)[0].status in ("running", "done"), 240, "the resume")
            started_pids.append(api.list_runs(home)[0].pid)
        # The app is closed: the engine goes on; a new app finds the run, watches it finish its
        # iteration, and shows that run's own numbers in every tab.
        async with ImmApp(home).run_test(size=(160, 48)) as pilot:
            screen = await runs_screen(pilot)
            assert table_rows(screen)[run.id]["status"] in ("running", "done")
            await until(pilot, lambda: table_rows(screen)[run.id]["status"] == "done", 300, "the run to finish")
            await pilot.press("enter")
            await until(pilot, lambda: getattr(pilot.app.screen, "detail", None), what="the run's detail")
            results = api.results(run.id, home)
            await pilot.press("3")
            merge1 = next(r for r in results if r.checkpoint == "merge1" and r.domain == "id")
            await until(pilot, lambda: f"{merge1.value:.1f}" in screen_text(pilot.app), what="Merge1's ID value")
            [verdict] = [v for v in api.verdicts(run.id, home) if v.checkpoint == "sft1"]
            await pilot.press("2")
            await until(pilot, lambda: f"= {verdict.spearman:+.2f}".replace("+", "") in screen_text(pilot.app).replace("+", "")
                        and verdict.verdict in screen_text(pilot.app), what="the layer verdict")
            sample = api.samples(run.id, 1, "generated", home)[0]
            await pilot.press("5")
            await until(pilot, lambda: sample.question.splitlines()[0] in screen_text(pilot.app), what="a generated sample")
            await pilot.press("4")
            await until(pilot, lambda: "weights the BASE" in screen_text(pilot.app), what="the merge lab")
    finally:
        for pid in started_pids:
            kill(pid)


async def test_a_run_named_with_markup_renders(snap_home):
    """A run whose name, error and log hold markup and escapes: the runs table, the line under it,
    a notification and the run's detail all show them without crashing."""
    async with ImmApp(snap_home).run_test(size=SIZE) as pilot:
        await runs_screen(pilot)
        pilot.app.jump("no [/foo] \x1b[2J")
        await until(pilot, lambda: any("[/foo]" in n.message for n in pilot.app._notifications), what="the message")
        await pilot.press("enter")  # the interrupted run, named "tiny [bold]x[/foo]"
        await until(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == RUN_INTERRUPTED, what="the run")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), what="the runs")


def screen_segments(app) -> list:
    """The screen's cells as drawn (the app's line filters, NO_COLOR's among them, applied)."""
    return [seg for strip in app.screen._compositor.render_strips() for seg in strip]


def colours(segments) -> list:
    return [c for seg in segments if seg.style for c in (seg.style.color, seg.style.bgcolor) if c is not None]


def assert_greys(app) -> None:
    used = colours(screen_segments(app))
    triplets = {c.get_truecolor() for c in used}
    assert used and all(r == g == b for r, g, b in triplets), sorted(triplets)[:5]


async def test_no_color_draws_in_greys_with_the_statuses_in_words(snap_home, monkeypatch):
    from imm_tui.screens.system import SystemScreen

    monkeypatch.setenv("NO_COLOR", "1")
    async with ImmApp(snap_home).run_test(size=(80, 24)) as pilot:
        await runs_screen(pilot)
        for status in ("interrupted", "stopped", "failed", "done"):  # the words carry what colours would
            await until(pilot, lambda: status in screen_text(pilot.app), what=status)
        assert_greys(pilot.app)
        await pilot.press("S")
        await until(pilot, lambda: isinstance(pilot.app.screen, SystemScreen), what="the system screen")
        assert_greys(pilot.app)
        await pilot.press("escape")
        await new_run_form(pilot)
        assert_greys(pilot.app)


async def test_16_colours_draw_only_standard_colours_and_tell_the_statuses_apart(snap_home, monkeypatch):
    import re

    from rich.segment import Segment, Segments
    from textual import constants

    monkeypatch.setattr(constants, "COLOR_SYSTEM", "standard")  # what TEXTUAL_COLOR_SYSTEM=standard sets
    async with ImmApp(snap_home).run_test(size=(80, 24)) as pilot:
        await runs_screen(pilot)
        statuses = ("done", "failed", "stopped", "interrupted")
        await until(pilot, lambda: all(s in screen_text(pilot.app) for s in statuses), what="every status")
        console = pilot.app.console
        assert console.color_system == "standard"

        def sgr_codes(segments) -> list[set[int]]:
            """The SGR parameters of each escape the terminal is sent for these segments."""
            with console.capture() as capture:
                console.print(Segments(segments), end="")
            return [{int(p) for p in params.split(";") if p} for params in re.findall(r"\x1b\[([0-9;]*)m", capture.get())]

        lines = pilot.app.screen._compositor.render_strips()
        codes = set().union(*sgr_codes([seg for strip in lines for seg in [*strip, Segment.line()]]))
        assert not codes & {38, 48}, "a 256-colour or truecolor code in 16-colour output"
        foreground = set(range(30, 38)) | set(range(90, 98))
        drawn = {}
        for status in statuses:
            [first, *_] = sgr_codes([next(seg for strip in lines for seg in strip if seg.text.strip() == status)])
            drawn[status] = (frozenset(first & foreground), 7 in first)  # its colour, reversed or not
        assert all(colour for colour, _ in drawn.values()), drawn
        assert len(set(drawn.values())) == len(statuses), drawn  # each status looks different
