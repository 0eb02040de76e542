"""Short formats for tables: durations, percentages, dates, and the style of every status."""
from __future__ import annotations

import time

# One style per status word, wherever it shows (runs table, run header, stage timeline, merge-lab
# trials): a run's, a stage's or a trial's "running" look the same.
STATUS_STYLE = {
    "created": "dim", "pending": "dim", "queued": "dim",  # not started
    "running": "bold yellow", "done": "green", "stopped": "yellow", "failed": "bold red",
    "interrupted": "bold magenta", "stale": "bold magenta",  # its engine is gone
    "missing": "bold red reverse",  # the run's folder is gone
}


def duration(seconds: float | None) -> str:
    """42s, 14m05s, 3h07m, 2d04h; '' for None."""
    if seconds is None:
        return ""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def when(epoch: float | None) -> str:
    """Local date and time to the minute."""
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))
