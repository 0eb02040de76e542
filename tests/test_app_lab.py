"""Pilot tests of the Layers and Merge lab tabs and the Compare and Export screens, on a real
finished run (1 iteration, diagnostics on); one merge-lab trial and its adoption run the real
detached engine on a copy of that run's home."""
from __future__ import annotations

import os
import shutil
import sqlite3

import pytest
from textual.widgets import DataTable, Input, Static

from app_helpers import until
from app_fixtures import RUN_DONE, RUN_FAILED, RUN_STOPPED, make_snapshot_home
from engine import api
from imm_tui.app import ImmApp
from imm_tui.panes.layers import LayersPane, fmt
from imm_tui.panes.merge_lab import MergeLabPane
from imm_tui.screens.compare import CompareScreen
from imm_tui.screens.export import ExportScreen

pytestmark = pytest.mark.anyio  # Pilot tests are coroutines (anyio's pytest plugin, asyncio backend)
SIZE = (120, 40)




def text_of(widget: Static) -> str:
    return str(widget.content)


def column(table: DataTable, index: int) -> list[str]:
    return [str(table.get_row_at(r)[index]) for r in range(table.row_count)]


async def on_runs_screen(pilot) -> None:
    """The app's first screen is up (the app pushes it on mount)."""
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "RunsScreen", what="the runs screen")


async def open_pane(pilot, run_id: str, pane_type):
    """Open the run, switch to the pane's tab with its key, and return the pane once it has read its data."""
    key = {LayersPane: "2", MergeLabPane: "4"}[pane_type]
    await on_runs_screen(pilot)
    pilot.app.open_run(run_id)
    await until(pilot, lambda: pilot.app.screen.query_one(pane_type), what="the run detail screen")
    await pilot.press(key)
    pane = pilot.app.screen.query_one(pane_type)
    await until(pilot, lambda: pane.data is not None, what=f"{pane_type.__name__}'s data")
    return pane


@pytest.fixture
def snapshot_home(tmp_path):
    return make_snapshot_home(tmp_path / "snap-home")


async def test_layers_shows_the_runs_numbers_and_steps_checkpoints(finished_run):
    home, run_id = finished_run
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(pilot, run_id, LayersPane)
        table = pane.query_one(DataTable)
        await until(pilot, lambda: table.row_count > 0, what="layer rows")
        assert app.focused is table  # the pane's keys work at once

        for ckpt in ("sft1", "merge1"):
            stats = sorted(api.layer_stats(run_id, 1, ckpt, home=home), key=lambda s: s.layer)
            verdict = next(v for v in api.verdicts(run_id, home=home) if v.checkpoint == ckpt)
            assert api.checkpoint_label(ckpt) in text_of(pane.query_one("#layers-head"))
            assert column(table, 0) == [str(s.layer) for s in stats]
            assert column(table, 1) == [fmt(s.importance, False) for s in stats]
            assert column(table, 2) == [fmt(s.weight_change, False) for s in stats]
            shown = text_of(pane.query_one("#layers-verdict"))
            assert verdict.verdict in shown and f"{verdict.spearman:+.2f}" in shown
            assert f"by importance: {', '.join(map(str, verdict.top_importance))}" in shown
            if ckpt == "sft1":
                await pilot.press("a")  # shares of the total
                assert column(table, 2) == [fmt(s.weight_change_pct, True) for s in stats]
                await pilot.press("m")  # attention modules only
                attn = [sum(m.importance for n, m in s.modules.items() if "attn" in n) for s in stats]
                assert column(table, 1) == [fmt(100 * v / sum(attn), True) for v in attn]
                assert "attention" in text_of(pane.query_one("#layers-head"))
                await pilot.press("a", "m", "m")  # back to absolute, all modules
                await pilot.press("c")


async def test_layers_empty_state_then_rows_landing_live_and_taking_the_keys(snapshot_home):
    from app_fixtures import _layer_rows

    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(pilot, RUN_STOPPED, LayersPane)
        empty = text_of(pane.query_one("#layers-empty"))
        assert 'analyze.when = "every"' in empty  # the stopped run has not reached its analyze stage
        rows = _layer_rows(1, "sft1")
        db = sqlite3.connect(snapshot_home / "imm.db")  # what the analyze stage writes
        with db:
            db.executemany(f"INSERT INTO layer_stats (run_id, {', '.join(rows[0])}) VALUES (?{', ?' * len(rows[0])})",
                           [(RUN_STOPPED, *r.values()) for r in rows])
        db.close()
        table = pane.query_one(DataTable)
        await until(pilot, lambda: table.row_count == len(rows), what="the new rows")
        assert not pane.query_one("#layers-empty").display
        assert column(table, 1) == [fmt(r["importance"], False) for r in rows]
        # the table was hidden while the pane was empty: once shown it has the keys (a: Abs/%)
        await until(pilot, lambda: app.focused is table, what="the table focused")
        await pilot.press("a")
        assert pane.percent and "% of total" in text_of(pane.query_one("#layers-head"))


async def test_merge_lab_runs_a_real_trial_and_adopts_it(finished_run, tmp_path):
    src, run_id = finished_run
    home = tmp_path / "home"
    shutil.copytree(src, home, symlinks=True)
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(pilot, run_id, MergeLabPane)
        assert "BASE" in text_of(pane.query_one("#lab-note"))
        assert (pane.alpha, pane.drop) == (0.5, 0.1)  # the run's own merge settings
        await pilot.press("right", "comma")  # alpha 0.6, p 0.0
        await pilot.press("n")
        await until(pilot, lambda: app.screen.query(Input), what="the subset prompt")
        await pilot.press("backspace", "8", "enter")
        assert pane.subset == 8
        assert "α 0.6, p (drop) 0.0, 8 questions/task" in text_of(pane.query_one("#lab-head"))
        await pilot.press("enter")  # queue the trial

        table = pane.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 1, what="the queued trial's row")
        await until(pilot, lambda: column(table, 3)[0] in ("done", "failed"), timeout=300, what="the trial")
        [trial] = api.trials(run_id, home=home)
        assert trial.status == "done", f"trial failed: {trial.error}; see {home}/runs/{run_id}/engine.out"
        assert (trial.alpha, trial.drop_rate, trial.subset) == (0.6, 0.0, 8)
        row = table.get_row_at(0)
        ids = [r.value for r in trial.results if r.domain == "id" and r.metric == "pass@1"]
        assert str(row[4]) == f"{sum(ids) / len(ids):.1f}" and str(row[6]) == "8"
        grid = pane.query_one("AlphaGrid", DataTable)
        assert grid.row_count == 1 and str(grid.get_row_at(0)[0]) == "0.6"

        await pilot.press("A")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the adopt question")
        await pilot.press("y")

        def adopted() -> bool:
            merge = next(s for s in api.run_detail(run_id, home=home).stages if (s.iteration, s.stage) == (1, "merge"))
            return merge.info.get("adopted_trial") == trial.id

        await until(pilot, adopted, timeout=300, what="the detached adopt engine")
        stages = {(s.iteration, s.stage): s for s in api.run_detail(run_id, home=home).stages}
        assert stages[(1, "merge")].info["alpha"] == 0.6
        assert stages[(1, "analyze")].status == "pending"  # later stages go back to pending
        await until(pilot, lambda: "✓ adopted" in column(table, 8), what="the adopted mark")


async def test_merge_lab_grid_leaves_out_alphas_already_trialled_and_the_runs_own(snapshot_home, monkeypatch):
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(pilot, RUN_DONE, MergeLabPane)
        await until(pilot, lambda: pane.data and pane.iteration == 1, what="the trials")
        queued = []
        monkeypatch.setattr(pane, "queue", lambda alphas, drops: queued.append((alphas, drops)))
        assert (pane.alpha, pane.drop) == (0.5, 0.1)
        await pilot.press("g")  # trials at p 0.1: α 0.3 and 0.5, and the run's own merge is α 0.5, p 0.1
        assert queued == [([0.1, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9], [0.1])]
        await pilot.press("comma", "g")  # p 0.0: α 0.7 done, α 0.9 queued
        assert queued[-1] == ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8], [0.0])


async def test_charts_keep_their_height_and_keys_off_the_data_at_80x24(snapshot_home):
    from textual_plotext import PlotextPlot

    from app_helpers import screen_text
    from imm_tui.panes.results import PLOT_ROWS

    app = ImmApp(snapshot_home)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_pane(pilot, RUN_DONE, LayersPane)
        await until(pilot, lambda: "Iteration 2 of 2" in text_of(pane.query_one("#layers-head")), what="the head")
        legend = "█ importance   ░ weight change (right axis)"
        await until(pilot, lambda: legend in screen_text(app), what="the layers legend")  # drawn after the head
        assert "⅃" not in screen_text(app)
        lab = pilot.app.screen.query_one(MergeLabPane)
        await pilot.press("4")
        await until(pilot, lambda: lab.data is not None, what="the lab")
        # laid out at its minimum height: the tab scrolls instead of shrinking it
        await until(pilot, lambda: lab.query_one("#lab-plot", PlotextPlot).size.height >= 14, what="the lab plot's height")
        await pilot.press("3")
        plot = pilot.app.screen.query_one("#results-plot", PlotextPlot)
        await until(pilot, lambda: plot.size.height >= PLOT_ROWS, what="the results plot's height")
        key = pilot.app.screen.query_one("#results-key", Static)
        await until(pilot, lambda: "● arith_add3 ID" in str(key.render()), what="the results key")
        assert "x arith_add4 OOD" in str(key.render())


async def test_merge_lab_refuses_a_running_run_with_the_engines_text(snapshot_home):
    # The run is stored as running with a live engine pid (this process): the engine refuses a sweep.
    db = sqlite3.connect(snapshot_home / "imm.db")
    with db:
        db.execute("UPDATE runs SET status = 'running', pid = ? WHERE id = ?", (os.getpid(), RUN_DONE))
    db.close()
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(pilot, RUN_DONE, MergeLabPane)
        assert "run is running" in text_of(pane.query_one("#lab-head"))
        await pilot.press("enter")
        await until(pilot, lambda: any("sweep once it stops or finishes" in n.message and n.severity == "error"
                                          for n in app._notifications), what="the refusal")
        assert len(api.trials(RUN_DONE, home=snapshot_home)) == 4  # nothing queued


async def test_compare_shows_results_with_differences_and_only_differing_config(snapshot_home):
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        await on_runs_screen(pilot)
        app.compare_runs([RUN_DONE, RUN_FAILED])
        await until(pilot, lambda: app.screen.query_one("#compare-config", DataTable).row_count > 0,
                       what="the config diff")
        config = app.screen.query_one("#compare-config", DataTable)
        diff = api.compare([RUN_DONE, RUN_FAILED], home=snapshot_home).config_diff
        assert column(config, 0) == list(diff) and "method" in diff and "name" in diff
        results = app.screen.query_one("#compare-results", DataTable)
        base_id = [results.get_row_at(r) for r in range(results.row_count)
                   if str(results.get_row_at(r)[0]) == "Base" and str(results.get_row_at(r)[2]) == "pass@1"]
        assert [str(c) for c in base_id[0][3:]] == ["31.0", "31.0 (+0.0)"]
        merge = next(results.get_row_at(r) for r in range(results.row_count) if str(results.get_row_at(r)[0]) == "Merge1")
        assert str(merge[4]) == "-"  # the failed run has no Merge1
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


async def test_compare_says_when_runs_were_evaluated_on_different_question_counts(snapshot_home):
    from engine.runstate.store import Store

    store = Store(snapshot_home)
    with store.db.conn:  # the failed run's base measured on 30 questions a task, the other's on 300
        store.db.execute("UPDATE metrics SET n = 30 WHERE run_id = ?", [RUN_FAILED])
    app = ImmApp(snapshot_home)
    async with app.run_test(size=SIZE) as pilot:
        await on_runs_screen(pilot)
        app.compare_runs([RUN_DONE, RUN_FAILED])
        results = await until(pilot, lambda: app.screen.query_one("#compare-results", DataTable).row_count
                              and app.screen.query_one("#compare-results", DataTable), what="the results")
        base = next(results.get_row_at(r) for r in range(results.row_count) if str(results.get_row_at(r)[0]) == "Base")
        assert [str(c) for c in base[3:]] == ["31.0 n=300", "31.0 n=30"]  # no difference computed
        assert "different question counts (n)" in str(app.screen.query_one("#compare-results-title", Static).render())
        assert "tiny-arith-vanilla" in str(app.screen.query_one("#compare-runs", Static).render())


async def open_export(pilot, run_id: str) -> ExportScreen:
    await on_runs_screen(pilot)
    pilot.app.export_run(run_id)
    await until(pilot, lambda: isinstance(pilot.app.screen, ExportScreen) and pilot.app.screen.query_one(Input),
                   what="the export dialog")
    return pilot.app.screen


@pytest.mark.parametrize("choice,what,fmt_", [(0, "results", "md"), (1, "results", "csv"), (2, "results", "json"),
                                              (3, "layers", "csv"), (4, "curves", "csv"), (5, "system", "csv")])
async def test_export_writes_each_format(finished_run, tmp_path, monkeypatch, choice, what, fmt_):
    home, run_id = finished_run
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, run_id)
        monkeypatch.chdir(tmp_path)  # a stray write of the default ./RUN-... path stays out of the checkout
        await pilot.press(*["down"] * choice)  # the choices are a radio set, focused first; arrows select (enter writes)
        path = screen.query_one(Input)
        assert path.value == f"./{run_id}-{what}.{fmt_}"  # the default follows the format
        target = tmp_path / f"out.{fmt_}"
        path.value = str(target)
        await pilot.press("ctrl+s")
        result = screen.query_one("#export-result", Static)
        await until(pilot, lambda: "wrote" in text_of(result), what="the export")
        assert target.read_text() == api.export(run_id, fmt_, what, home=home) + "\n"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(run_id)] == []  # only the chosen path written
        assert str(target) in text_of(result)
        if what == "layers":
            assert target.read_text().startswith("iteration,checkpoint,layer,importance")
        if what in ("curves", "system"):  # the real run stored its steps and its samples
            header, *rows = target.read_text().splitlines()
            assert header.startswith({"curves": "iteration,step,loss,lr,grad_norm", "system": "iteration,stage,ts,cpu_pct"}[what])
            assert rows


async def test_export_to_a_bad_path_shows_the_error(finished_run, tmp_path):
    home, run_id = finished_run
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_export(pilot, run_id)
        screen.query_one(Input).value = str(tmp_path / "no-such-folder" / "out.md")
        screen.query_one(Input).focus()
        await pilot.press("enter")
        result = screen.query_one("#export-result", Static)
        await until(pilot, lambda: "cannot write" in text_of(result), what="the error")
        assert result.has_class("-error")
        await pilot.press("escape")
        assert not isinstance(app.screen, ExportScreen)
