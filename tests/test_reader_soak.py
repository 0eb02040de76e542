"""Readers against a writer at a high rate (benchmarks/soak.py, shortened): the app, the real CLI
and engine.api pollers read while the engine's writer commits progress rows every few ms, log
lines and stage-done transactions; no reader fails, nothing committed is lost."""
from __future__ import annotations

import pytest

from benchmarks.soak import soak


@pytest.mark.slow
def test_readers_and_the_app_survive_a_fast_writer_and_lose_nothing(tmp_path):
    seen = soak(tmp_path, seconds=8, cli=1)
    assert seen["writer"]["metrics"] > 20 and seen["writer"]["ticks"] > 200, seen["writer"]
    assert seen["lost"] == {"metrics": 0, "progress_ticks": 0, "log_lines": 0}
    assert seen["locked"] == 0 and seen["reader_errors"] == 0, seen["readers"]
    assert seen["readers"]["api"]["backwards"] == 0
    assert {"api", "cli0", "app"} <= set(seen["readers"])
    assert all(r["latency"]["n"] > 0 for r in seen["readers"].values()), seen["readers"]
    # Bounded: a round of every read function stays well under the app's 0.5 s poll interval.
    assert seen["readers"]["api"]["latency"]["p95_ms"] < 500, seen["readers"]["api"]
