"""The run detail screen driven by Pilot: a real finished run's numbers, samples, timeline, log and
config; the followed, searchable log on a run whose log grows; text with markup and ESC shown
literally; resume / stop answered with the engine's text."""
from __future__ import annotations

import shutil
import sqlite3

import pytest
from textual.widgets import DataTable, TextArea

from app_helpers import cells, screen_text, until, until_shown
from app_fixtures import (
    FAILED_ERROR, MARKUP_NAME, RUN_DONE, RUN_FAILED, RUN_INTERRUPTED, RUN_STOPPED, freeze_clock, make_snapshot_home,
)
from engine import api
from imm_tui.app import ImmApp
from imm_tui.panes.progress import progress_line
from imm_tui.panes.samples import SamplesPane
from imm_tui.screens.run_detail import RunDetailScreen
from imm_tui.widgets.dialogs import PromptScreen
from imm_tui.widgets.log_view import LogView, TailLog
from imm_tui.widgets.plain import clean

pytestmark = pytest.mark.anyio  # Pilot tests are coroutines (anyio's pytest plugin, asyncio backend)
SIZE = (120, 40)






async def open_detail(pilot, run_id: str) -> RunDetailScreen:
    pilot.app.open_run(run_id)
    await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen) and pilot.app.screen.detail is not None)
    return pilot.app.screen




@pytest.fixture
def snapshot_home(tmp_path, monkeypatch):
    freeze_clock(monkeypatch)
    return make_snapshot_home(tmp_path / "home")


@pytest.fixture
def growing_run(tmp_path, finished_run):
    """A copy of the finished run's home, whose engine.log the test appends to."""
    home, run_id = finished_run
    copy = tmp_path / "home"
    shutil.copytree(home, copy, symlinks=True)
    with sqlite3.connect(copy / "imm.db") as db:  # the database names the run's folder absolutely
        db.execute("UPDATE runs SET run_dir = ?", (str(copy / "runs" / run_id),))
    path = api.log_path(run_id, home=copy)
    assert path.is_relative_to(copy)
    return copy, run_id, path


# ------------------------------------------------------------------ the real finished run


async def test_real_run_in_every_pane(finished_run):
    home, run_id = finished_run
    detail = api.run_detail(run_id, home=home)
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, run_id)

        # Progress: every stage done (a ✓ per stage, nothing pending or running), the log's last line
        assert all(s.status == "done" for s in detail.stages)
        await until(pilot, lambda: screen_text(app).count("✓") >= len(detail.stages))
        text = screen_text(app)
        assert text.count("✓") == len(detail.stages) and "▶" not in text and "done" in text
        last = detail.log_path.read_text().splitlines()[-1]
        log = screen.query_one(TailLog)
        await until(pilot, lambda: log.line_count > 0)
        assert log.lines[-1] == clean(last)

        # Results: the database's numbers, best starred, change against Base
        await pilot.press("3")
        table = screen.query_one("#results-table", DataTable)
        await until(pilot, lambda: table.row_count > 0)
        rows = [r for r in api.results(run_id, home=home) if r.metric == "pass@1"]
        shown = cells(table)
        assert [r[0] for r in shown] == sorted({r.label for r in rows}, key=lambda label: api.checkpoint_order(label.lower()))
        base_id = next(r for r in rows if r.checkpoint == "base" and r.domain == "id")
        assert f"{base_id.value:.1f}" in shown[0][1]
        merge = next(r for r in rows if r.checkpoint == "merge1" and r.domain == "id")
        assert f"{merge.value:.1f} ({merge.value - base_id.value:+.1f})" in " ".join(shown[-1])
        assert any(c.endswith("*") for c in shown[0][1:] + shown[-1][1:] + [x for r in shown for x in r[1:2]])

        # Samples: the run's real completions, the highlighted one in full
        await pilot.press("5")
        samples = screen.query_one(SamplesPane)
        await until(pilot, lambda: samples.query_one(DataTable).row_count > 0)
        first_set = api.sample_sets(run_id, 1, home=home)[0]  # generated, or kept where no graded file is
        real = api.samples(run_id, 1, first_set, home=home)
        assert samples.which == first_set and len(samples.shown) == len(real) > 0
        assert cells(samples.query_one(DataTable))[0][0] == real[0].id
        assert clean(real[0].completion).strip().splitlines()[0] in screen_text(app)

        # Config: the resolved config as TOML
        await pilot.press("6")
        await until(pilot, lambda: "[merge]" in screen.query_one(TextArea).text, what="the config")


# ------------------------------------------------------------------ the followed, searchable log


async def test_log_follows_pauses_resumes_and_searches(growing_run):
    home, run_id, path = growing_run
    app = ImmApp(home)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_detail(pilot, run_id)
        log = screen.query_one(TailLog)
        await until(pilot, lambda: log.line_count > 0)

        def append(lines):
            with open(path, "a") as f:
                f.write("".join(f"{line}\n" for line in lines))

        append([f"appended line {i}" for i in range(200)])
        await until(pilot, lambda: log.lines[-1] == "appended line 199")
        await until(pilot, lambda: log.following and log.scroll_y == log.max_scroll_y, what="the end in view")

        log.focus()
        await pilot.press("home")
        await until(pilot, lambda: log.scroll_y == 0 and "paused" in screen_text(app), what="the pause")
        append(["while scrolled up 1", "while scrolled up 2"])
        await until(pilot, lambda: log.lines[-1] == "while scrolled up 2")
        assert log.scroll_y == 0  # the view stayed where the user put it

        await pilot.press("end")
        await until(pilot, lambda: log.following, what="following again")
        append(["after end"])
        await until(pilot, lambda: log.lines[-1] == "after end")
        await until(pilot, lambda: log.following and log.scroll_y == log.max_scroll_y and "following" in screen_text(app),
                    what="the new end in view")

        await pilot.press("slash")
        await pilot.press(*"line 42")
        await pilot.press("enter")
        hit = await until(pilot, lambda: log.match_line is not None  # and scrolled on screen
                          and log.scroll_y <= log.match_line < log.scroll_y + log.size.height and log.match_line,
                          what="the match in view")
        assert "appended line 42" in log.lines[hit]
        row = hit - round(log.scroll_offset.y)  # the match's row on screen is drawn reversed, a neighbour not
        other = row - 1 if row > 0 else row + 1
        assert [any(seg.style and seg.style.reverse for seg in log.render_line(r)) for r in (other, row)] == [False, True]
        await pilot.press("n")  # only one line holds "line 42": n wraps back to it
        assert log.match_line == hit
        await pilot.press("slash", *"appended line 1", "enter")
        first = log.match_line
        await pilot.press("n")
        assert log.match_line > first
        await pilot.press("N")
        assert log.match_line == first

        await pilot.press("slash", "x", "escape")  # escape closes the search, not the screen
        await until(pilot, lambda: app.screen is screen and log.has_focus, what="the log, focused")


async def test_log_window_is_bounded(growing_run):
    home, run_id, path = growing_run
    app = ImmApp(home)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_detail(pilot, run_id)
        view = screen.query_one(LogView)
        with open(path, "a") as f:
            f.write("".join(f"burst {i}\n" for i in range(view.window * 2)))
        log = view.log
        await until(pilot, lambda: log.lines and log.lines[-1] == f"burst {view.window * 2 - 1}")
        assert log.line_count <= view.window


async def test_markup_and_escapes_in_the_log_show_literally(growing_run):
    home, run_id, path = growing_run
    app = ImmApp(home)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(pilot, run_id)
        with open(path, "a") as f:
            f.write("model said [bold]x[/foo] \x1b[31mred\x1b[0m\n")
        log = screen.query_one(TailLog)
        await until(pilot, lambda: log.lines[-1].startswith("model said"))
        await until(pilot, lambda: "model said" in screen_text(app), what="the line drawn")
        assert "model said [bold]x[/foo] ␛[31mred␛[0m" in screen_text(app)


# ------------------------------------------------------------------ the fixture home (no engine)


async def test_sample_with_markup_and_filters(snapshot_home):
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, RUN_DONE)
        await pilot.press("5")
        pane = screen.query_one(SamplesPane)
        table = pane.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 12)
        row = next(i for i, s in enumerate(pane.shown) if "[bold]" in s.completion)
        table.move_cursor(row=row)
        await until(pilot, lambda: "[bold]2 + 3 + 4[/foo] = ␛[31m" in screen_text(app), what="the sample's text")

        await pilot.press("f")  # correct only
        assert pane.shown and all(s.correct for s in pane.shown)
        await pilot.press("f")  # wrong only
        assert pane.shown and all(s.correct is False for s in pane.shown)
        await pilot.press("f", "g")  # all; the next set: kept
        await until(pilot, lambda: pane.which == "kept" and table.row_count == 8)
        await pilot.press("g")
        await until(pilot, lambda: pane.which == "eval:sft1")
        await pilot.press("t")  # the first task
        assert {s.task for s in pane.shown} == {"arith_add3"}
        await pilot.press("right_square_bracket")  # iteration 2: nothing written
        await until(pilot, lambda: pane.iteration == 2 and table.row_count == 0 and "no samples" in screen_text(app))


async def test_samples_sets_in_stage_order_and_pages_past_2000_rows(snapshot_home):
    import json

    from engine.runstate.paths import RunPaths

    path = RunPaths(snapshot_home / "runs" / RUN_DONE).eval_samples(1, "merge1")
    path.write_text("".join(json.dumps({"task": "arith_add3", "id": f"q{i}", "question": "1 + 1", "gold": "2",
                                        "completion": f"answer {i}", "extracted": "2", "correct": True}) + "\n"
                            for i in range(4500)))
    assert api.sample_sets(RUN_DONE, 1, home=snapshot_home)[-2:] == ["eval:sft1", "eval:merge1"]
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, RUN_DONE)
        await pilot.press("5")
        pane = screen.query_one(SamplesPane)
        await until(pilot, lambda: pane.which == "generated")
        await pilot.press("g", "g", "g")
        await until(pilot, lambda: pane.which == "eval:merge1" and len(pane.shown) == 2000, what="eval:merge1")
        assert "rows 1-2,000 of 4,500" in screen_text(app)
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert pane.shown[0].id == "q4000" and len(pane.shown) == 500
        assert "rows 4,001-4,500 of 4,500" in screen_text(app)
        await pilot.press("greater_than_sign")  # no page after the last
        assert pane.shown[0].id == "q4000"
        await pilot.press("less_than_sign")
        assert pane.shown[0].id == "q2000"


async def test_results_metric_cycles_and_best_is_starred(snapshot_home):
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, RUN_DONE)
        await pilot.press("3")
        table = screen.query_one("#results-table", DataTable)
        await until(pilot, lambda: table.row_count == 5)
        rows = cells(table)
        assert rows[0] == ["Base", "31.0 ", "12.0 ", "9.3 "]
        assert rows[3][1] == "71.0 (+40.0)*" and rows[4][2] == "24.0 (+12.0)*"
        await pilot.press("k")
        assert cells(table)[0][1] == "43.4 " and "pass@4" in screen_text(app)


async def test_failed_run_header_and_timeline_show_the_error(snapshot_home):
    app = ImmApp(snapshot_home)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_detail(pilot, RUN_FAILED)
        await until(pilot, lambda: all(word in screen_text(app) for word in ("failed", FAILED_ERROR, "✗")),
                    what="the error in the header and the timeline")


async def test_running_stage_progress_rate_loss_and_tokens(snapshot_home):
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        await open_detail(pilot, RUN_INTERRUPTED)
        await until_shown(pilot, "interrupted", "⏸",  # its engine is gone: no clock runs
                          "iter 1 sft · 40/120 steps · 2.0 steps/s · loss 0.734 · 5,400 tok/s", "33%",
                          f"({MARKUP_NAME})", "[/foo]␛[2J")  # its name and log line, literally


def test_progress_line_of_a_running_stage_has_an_eta():
    p = api.Progress(iteration=2, stage="generate", step=300, total=900, unit="samples", rate=10.0,
                     tokens_per_s=1234.0, loss=None, started=0.0, updated=30.0)
    assert progress_line(p, "running") == "iter 2 generate · 300/900 samples · 10.0 samples/s · ETA 1m00s · 1,234 tok/s"


def test_eval_progress_names_the_checkpoint_it_answers_with():
    p = api.Progress(iteration=1, stage="eval", step=300, total=900, unit="questions", rate=None, tokens_per_s=None,
                     loss=None, started=0.0, updated=30.0, label="SFT1 (1 of 2)")
    assert progress_line(p, "running") == "iter 1 eval SFT1 (1 of 2) · 300/900 questions"


async def test_a_run_failing_while_watched_says_so_with_the_engines_error(snapshot_home):
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        await open_detail(pilot, RUN_STOPPED)
        with sqlite3.connect(snapshot_home / "imm.db") as db:  # what an engine writes when a stage fails
            db.execute("UPDATE runs SET status = 'failed', error = 'eval: disk full [/foo]' WHERE id = ?", (RUN_STOPPED,))
        await until(pilot, lambda: any(n.message == "eval: disk full [/foo]" and n.severity == "error"
                                       for n in app._notifications))


async def test_config_saves_a_preset_and_copies(snapshot_home, tmp_path, monkeypatch):
    monkeypatch.setenv("IMM_PRESETS_DIR", str(tmp_path / "presets"))
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, RUN_DONE)
        await pilot.press("6")
        await until(pilot, lambda: "[merge]" in screen.query_one(TextArea).text)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), what="the name prompt")
        await pilot.press("ctrl+a", "ctrl+k", *"my-preset", "enter")  # the prompt offers a name; replace it
        saved = tmp_path / "presets" / "my-preset.toml"
        await until(pilot, lambda: saved.exists())
        assert "[merge]" in saved.read_text() and 'name = "my-preset"' in saved.read_text()
        await pilot.press("p", "enter")  # the offered name
        await until(pilot, lambda: (tmp_path / "presets" / "tiny-arith-copy.toml").exists())
        await pilot.press("p", "ctrl+a", "ctrl+k", *"my-preset", "enter")  # taken: the dialog says so, stays open
        await until(pilot, lambda: "exists" in str(app.screen.query_one("#prompt-error").render()))
        assert app.screen.query_one("#prompt").value == "my-preset"
        await pilot.press("escape")
        await pilot.press("y")
        assert any("terminal's clipboard (OSC 52 escape)" in n.message for n in app._notifications)
        await pilot.press("1")  # the read-only view leaves the tab keys to the screen
        assert screen.query_one("#tabs").active == "progress"


async def test_resume_and_stop_answer_with_the_engines_text(snapshot_home):
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        await open_detail(pilot, RUN_DONE)
        await pilot.press("r")
        await until(pilot, lambda: any("nothing left" in n.message for n in app._notifications))
        await pilot.press("s")  # a done run: refused without asking
        await until(pilot, lambda: any("nothing to stop" in n.message for n in app._notifications))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, RunDetailScreen), what="the screen to close")


async def test_a_filled_table_draws_its_columns_as_wide_as_their_widest_cell_before_it_is_ever_idle():
    """Textual measures auto-width columns on the table's idle; a frame drawn before that (a busy
    machine) kept label-wide columns, "ad  arit", in the Samples tab."""
    from textual.app import App

    from imm_tui.widgets.table_fill import fill

    class One(App):
        def compose(self):
            yield DataTable()

    app = One()
    async with app.run_test(size=(60, 6)) as pilot:
        table = app.query_one(DataTable)
        fill(table, ["id", "task"], [["add3-0", "arith_add3"], ["mix3-12", "arith_mix3"]])
        widths = [c.get_render_width(table) - 2 * table.cell_padding for c in table.ordered_columns]
        assert widths == [7, 10] and table._require_update_dimensions  # not measured yet, already wide
        await pilot.pause()
        assert "mix3-12  arith_mix3" in screen_text(app)


async def test_every_table_of_the_app_is_sized_from_its_cells_when_filled(snapshot_home):
    """No table waits for Textual's measurement on idle, which a busy machine draws after the first
    frame: the Compare screen stayed drawn with '9.3 (' for '9.3 (+0.0)' in CI. Every table the app
    shows, on every screen and tab of the fixture home, has its columns' widths set when filled."""
    app = ImmApp(snapshot_home)
    found: dict[str, list[str]] = {}  # table -> its columns left to the idle measurement

    async def tables(*ids: str) -> None:
        def filled():
            shown = {t.id: t for t in app.screen.query(DataTable)}
            return all(i in shown and shown[i].row_count for i in ids) and shown
        for i, table in (await until(pilot, filled, what=f"rows in {', '.join(ids)}")).items():
            found[i] = [str(c.label) for c in table.ordered_columns if c.auto_width]

    async with app.run_test(size=SIZE) as pilot:
        await tables("runs")
        await open_detail(pilot, RUN_DONE)
        for key, table in (("2", "layers-table"), ("3", "results-table"), ("4", "lab-trials"), ("5", "samples-table")):
            await pilot.press(key)
            await tables(table)
        await tables("lab-grid")
        await pilot.press("S")
        await tables("history-table")
        app.compare_runs([RUN_DONE, RUN_FAILED])
        await tables("compare-results", "compare-config")
        await pilot.press("question_mark")
        await tables("keys")
    assert len(found) == 10 and found == {table: [] for table in found}, found
