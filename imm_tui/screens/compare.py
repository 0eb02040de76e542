"""Two or more runs side by side: every result with its difference against the first run, and
only the config keys that differ. Results measured on different question counts (n) are not
diffed: each shows its n, and the title says so."""
from __future__ import annotations

import json

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from engine import api

from ..widgets.footer import ImmFooter
from ..widgets.plain import plain
from ..widgets.table_fill import fill


def diff_text(value: float | None, first: float | None, n: int | None = None) -> Text:
    """'57.3 (+2.0)' against the first run's value; '57.3 n=30' where the runs' question counts
    differ (no difference then: first is None); '-' where a run has no such row."""
    if value is None:
        return Text("-", justify="right")
    text = Text(f"{value:.1f}", justify="right")
    if n is not None:
        text.append(f" n={n}", style="yellow")
    elif first is not None:
        delta = value - first
        text.append(f" ({delta:+.1f})", style="green" if delta > 0 else "red" if delta < 0 else "")
    return text


def config_value(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v)


class CompareScreen(Screen):
    DEFAULT_CSS = """
    CompareScreen #compare-runs { height: auto; padding: 0 1; }
    CompareScreen .compare-title { height: auto; padding: 0 1; text-style: bold; }
    CompareScreen #compare-results { height: 2fr; }
    CompareScreen #compare-config { height: 1fr; min-height: 4; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    class Loaded(Message):
        def __init__(self, comparison: api.Comparison | None, error: str | None = None):
            super().__init__()
            self.comparison, self.error = comparison, error

    def __init__(self, run_ids: list[str]):
        super().__init__()
        self.run_ids = list(run_ids)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Comparing {len(self.run_ids)} runs...", id="compare-runs", markup=False)
        yield Static("Results (pass@k %, change against run 1)", classes="compare-title", id="compare-results-title",
                     markup=False)
        yield DataTable(id="compare-results", zebra_stripes=True, cursor_type="row")
        yield Static("Config keys that differ", classes="compare-title", markup=False)
        yield DataTable(id="compare-config", zebra_stripes=True, cursor_type="row")
        yield ImmFooter()

    def on_mount(self) -> None:
        self.sub_title = "compare"
        self.load()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self) -> None:
        try:
            self.post_message(self.Loaded(api.compare(self.run_ids, home=self.app.home)))
        except Exception as exc:  # the engine's refusal (or a busy database) shown as text
            self.post_message(self.Loaded(None, str(exc) or type(exc).__name__))

    def on_compare_screen_loaded(self, event: Loaded) -> None:
        if event.comparison is None:
            self.query_one("#compare-runs", Static).update(plain(f"Cannot compare: {event.error}"))
            return
        c = event.comparison
        names = [f"run {i}" for i in range(1, len(c.runs) + 1)]
        self.query_one("#compare-runs", Static).update(plain("\n".join(
            f"{n}: {s.id} · {s.name} ({s.method}, {s.status})" for n, s in zip(names, c.runs))))

        rows: dict[tuple, dict[str, api.ResultRow]] = {}
        for s in c.runs:
            for r in c.results[s.id]:
                rows.setdefault((api.result_order(r.checkpoint, r.domain, r.task, r.metric), r.label), {})[s.id] = r
        first = c.runs[0].id
        uneven = False
        results = []
        for ((_, ood, task, metric), label), found in sorted(rows.items()):
            values = {run_id: r.value for run_id, r in found.items()}
            apart = len({r.n for r in found.values()}) > 1  # measured on different question counts
            uneven |= apart
            results.append([plain(label), plain(f"{task} ({'ood' if ood else 'id'})"), plain(metric),
                            *[diff_text(values.get(s.id), None if apart or not i else values.get(first),
                                        found[s.id].n if apart and s.id in found else None)
                              for i, s in enumerate(c.runs)]])
        fill(self.query_one("#compare-results", DataTable),
             ("checkpoint", "task", "metric", *names), results)
        self.query_one("#compare-results-title", Static).update(
            "Results (pass@k %, change against run 1)" + (
                " · some rows were measured on different question counts (n): those show each n and no change"
                if uneven else ""))

        config = [[plain(key), *[plain(config_value(v)) for v in per_run]] for key, per_run in c.config_diff.items()]
        fill(self.query_one("#compare-config", DataTable), ("key", *names),
             config or [[plain("(the configs are the same)"), *[""] * len(names)]])
