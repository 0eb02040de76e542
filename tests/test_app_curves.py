"""The run screen's Curves tab and the run's system history, driven by Pilot on the fixture home:
a braille line per iteration with the current one highlighted, m cycling the metric, a curve that
grows while the engine's writer stores steps, the per-stage table of the system history (where
the GPUs sat idle), and a run without samples saying so."""
from __future__ import annotations

import pytest

from app_fixtures import RUN_DONE, RUN_INTERRUPTED, RUN_STOPPED, STEPS, _sft_steps, freeze_clock, make_snapshot_home, ts
from app_helpers import cells, screen_text, until
from engine.runstate.store import Store
from imm_tui.app import ImmApp
from imm_tui.panes.curves import CurvesPane
from imm_tui.screens.run_detail import RunDetailScreen
from imm_tui.screens.run_system import RunSystemScreen
from imm_tui.widgets.curve_chart import CurveChart
from test_app_detail import open_detail

pytestmark = pytest.mark.anyio  # Pilot tests are coroutines (anyio's pytest plugin, asyncio backend)
SIZE = (100, 32)
BRAILLE = range(0x2801, 0x2900)  # dotted braille cells (U+2800 is blank)


@pytest.fixture
def home(tmp_path, monkeypatch):
    freeze_clock(monkeypatch)
    return make_snapshot_home(tmp_path / "home")


async def open_curves(pilot, run_id: str, steps: int) -> CurvesPane:
    screen = await open_detail(pilot, run_id)
    await pilot.press("7")
    pane = screen.query_one(CurvesPane)
    await until(pilot, lambda: len(pane.points) == steps and pane._shown is not None, what=f"{steps} steps drawn")
    await pilot.pause(0.1)
    return pane


def braille_colours(app) -> set:
    """The colours of the dotted braille cells on screen: one per line style drawn."""
    chart = app.screen.query_one(CurveChart)
    return {seg.style.color for strip in chart.render_lines(chart.region.reset_offset) for seg in strip
            if seg.style and any(ord(ch) in BRAILLE for ch in seg.text)}


async def test_the_curves_tab_draws_a_line_per_iteration_with_the_current_one_highlighted(home):
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_curves(pilot, RUN_DONE, 2 * STEPS)
        text = screen_text(app)
        assert "SFT loss by optimizer step" in text
        assert "loss · ━ iter 1  ━ iter 2 (current) at step 30" in text  # the legend, off the plot
        assert len(braille_colours(app)) == 2  # iteration 1 dimmed, iteration 2 in the accent colour
        assert "per iteration (%)" in text  # 32 rows: room for the per-iteration chart under its table
        assert "● yield %                   -   19.6   27.3" in text
        assert "x ID pass@1 Merge        31.0   55.3   66.3" in text
        assert sorted(pane.points) == [(t, s) for t in (1, 2) for s in range(1, STEPS + 1)]


async def test_m_cycles_the_curve_through_loss_lr_grad_norm_and_tokens_per_second(home):
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await open_curves(pilot, RUN_DONE, 2 * STEPS)
        titles = []
        for _ in range(4):
            await pilot.press("m")
            await pilot.pause(0.05)
            titles.append(next(line.strip() for line in screen_text(app).splitlines() if "by optimizer step" in line))
        assert titles == ["SFT learning rate by optimizer step", "SFT gradient norm by optimizer step",
                          "SFT tokens/s by optimizer step", "SFT loss by optimizer step"]


async def test_a_running_curve_grows_as_the_engine_stores_steps(home):
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_curves(pilot, RUN_INTERRUPTED, 40)
        assert "iter 1 (current) at step 40" in screen_text(app)
        store = Store(home)  # the engine's writer, as a running SFT stage uses it
        store.record_sft_steps(RUN_INTERRUPTED, 1, _sft_steps(1, 55, ts(4, 8, 4))[40:])
        store.db.close()
        await until(pilot, lambda: len(pane.points) == 55, what="the new steps")
        await until(pilot, lambda: "iter 1 (current) at step 55" in screen_text(app), what="the redrawn note")


async def test_the_system_history_shows_each_stage_and_where_the_gpus_sat_idle(home):
    app = ImmApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, RUN_DONE)
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, RunSystemScreen) and app.screen.query_one("#history-table").row_count,
                    what="the system history")
        rows = {r[0]: r for r in cells(app.screen.query_one("#history-table"))}
        header = [str(c.label) for c in app.screen.query_one("#history-table").ordered_columns]
        assert header == ["stage", "time", "CPU avg %", "CPU max %", "mem GiB", "GPU0 %", "GPU0 idle %", "GPU0 GiB",
                          "GPU1 %", "GPU1 idle %", "GPU1 GiB"]
        assert len(rows) == 14
        assert rows["1 filter"][1:] == ["1m00s", "95", "95", "12.0", "0", "100", "1.0", "0", "100", "1.0"]
        assert rows["1 generate"][5:] == ["90", "0", "40.0", "0", "100", "1.0"]  # GPU1 idle while generating
        assert rows["2 sft"][5:] == ["90", "0", "40.0", "90", "0", "40.0"]
        assert "84 samples · CPU and memory, 2 GPU(s) (NVML)" in screen_text(app)
        assert "system load by stage time" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="back on the run screen")


async def test_a_run_without_samples_says_where_they_come_from(home):
    app = ImmApp(home)
    async with app.run_test(size=SIZE) as pilot:
        await open_detail(pilot, RUN_STOPPED)
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, RunSystemScreen) and "no samples" in screen_text(app),
                    what="the empty history's note")
        assert app.screen.query_one("#history-table").row_count == 0


async def test_at_80x24_the_per_iteration_numbers_are_a_table_and_the_footer_keeps_keys_and_quit(home):
    """At 80x24 a chart of three iterations got three rows (values rounded onto them, its legend
    over the points): the numbers are a table and the chart is left out; the footer, too long for
    80 columns, leaves out keys but never `? Keys` nor `q Quit` (Textual's cut `q Quit` off)."""
    app = ImmApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_curves(pilot, RUN_DONE, 2 * STEPS)
        text = screen_text(app)
        assert "+ OOD pass@1 Merge       10.7   18.5   20.9" in text
        assert "per iteration (%)" not in text
        assert "? Keys  q Quit" in text.splitlines()[-1]
