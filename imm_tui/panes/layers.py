"""The Layers tab: per-layer importance (of the model an iteration started from) next to the
weight change SFT_t or Merge_t made, as bars and as a table of the numbers, with the
rank-correlation verdict of that checkpoint. Live while the analyze stage writes rows."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from engine import api

from ..widgets.layer_chart import LayerChart, key
from ..widgets.live_poll import LivePoll
from ..widgets.plain import plain
from ..widgets.table_fill import fill

# Module views: the layer totals, or the sum over the modules whose name holds the key.
MODULE_VIEWS = (("all modules", None), ("attention", "attn"), ("MLP", "mlp"))
EMPTY = "No layer diagnostics yet: the analyze stage writes them after an iteration's evaluation{why}."
EMPTY_WHY = {"off": ' when a run sets analyze.when = "every" or "first_last"; this run has "off"'}


@dataclass(frozen=True)
class LayersData:
    stats: tuple[api.LayerStat, ...]
    verdicts: tuple[api.Verdict, ...]
    analyze_when: str


def layer_values(stats: list[api.LayerStat], module_key: str | None, percent: bool
                 ) -> list[tuple[int, float | None, float | None]]:
    """(layer, importance, weight change) per layer: layer totals, or sums over the modules whose
    name contains module_key; percent: each as a share of its total over the layers."""
    if module_key is None:
        if percent:
            return [(s.layer, s.importance_pct, s.weight_change_pct) for s in stats]
        return [(s.layer, s.importance, s.weight_change) for s in stats]

    def total(s: api.LayerStat, field: str) -> float | None:
        values = [getattr(m, field) for name, m in s.modules.items() if module_key in name]
        values = [v for v in values if v is not None]
        return sum(values) if values else None

    rows = [(s.layer, total(s, "importance"), total(s, "weight_change")) for s in stats]
    if not percent:
        return rows

    def share(v: float | None, whole: float) -> float | None:
        return None if v is None or not whole else 100.0 * v / whole

    imp_sum = sum(r[1] or 0.0 for r in rows)
    chg_sum = sum(r[2] or 0.0 for r in rows)
    return [(n, share(i, imp_sum), share(c, chg_sum)) for n, i, c in rows]


def fmt(v: float | None, percent: bool) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}%" if percent else f"{v:.4g}"


def verdict_text(v: api.Verdict | None) -> str:
    if v is None:
        return "No verdict for this checkpoint yet."
    rho = "n/a" if v.spearman is None else f"{v.spearman:+.2f}"

    def layers(xs: tuple[int, ...]) -> str:
        return ", ".join(map(str, xs)) or "none"

    return (f"Spearman(importance, weight change) = {rho} (aligned at >= {v.threshold:g}): {v.verdict}.  "
            f"Top layers by importance: {layers(v.top_importance)}; by change: {layers(v.top_change)}; "
            f"overlap: {layers(v.top_overlap)}")


class LayersPane(LivePoll, Vertical):
    DEFAULT_CSS = """
    LayersPane { height: 1fr; }
    LayersPane #layers-head { height: auto; color: $text-muted; }
    LayersPane #layers-verdict { height: auto; }
    LayersPane #layers-body { height: 1fr; }
    LayersPane LayerChart { width: 1fr; height: 1fr; min-height: 8; }
    LayersPane #layers-table { width: 36; height: 1fr; }
    LayersPane #layers-empty { height: auto; padding: 1 2; }
    """
    ITER = Binding.Group("iter", compact=True)
    BINDINGS = [
        Binding("left_square_bracket", "iteration(-1)", "Prev iter", group=ITER),
        Binding("right_square_bracket", "iteration(1)", "Next iter", group=ITER),
        Binding("c", "checkpoint", "SFT/Merge"),
        Binding("a", "percent", "Abs/%"),
        Binding("m", "modules", "Modules"),
    ]

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.data: LayersData | None = None
        self.iteration: int | None = None
        self.kind = "sft"  # sft | merge: the checkpoint of the iteration
        self.percent = False
        self.view = 0  # index into MODULE_VIEWS

    def compose(self) -> ComposeResult:
        yield Static("Loading layer diagnostics...", id="layers-head", markup=False)
        yield Static("", id="layers-verdict", markup=False)
        with Horizontal(id="layers-body"):
            yield LayerChart()
            yield DataTable(id="layers-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="layers-empty", markup=False)

    def on_mount(self) -> None:
        self.start_polling()

    def read(self) -> LayersData:
        detail = api.run_detail(self.run_id, home=self.app.home)
        return LayersData(tuple(api.layer_stats(self.run_id, home=self.app.home)),
                          tuple(api.verdicts(self.run_id, home=self.app.home)),
                          str(detail.config.get("analyze", {}).get("when", "off")))

    def show(self, data) -> None:
        if isinstance(data, Exception):
            self.query_one("#layers-head", Static).update(plain(f"Cannot read layer diagnostics: {data}"))
            return
        if data == self.data:
            return
        self.data = data
        iterations = self.iterations()
        if iterations and self.iteration not in iterations:
            self.iteration = iterations[-1]
        self.render_view()

    def iterations(self) -> list[int]:
        return sorted({s.iteration for s in self.data.stats}) if self.data else []

    @property
    def checkpoint(self) -> str:
        return f"{self.kind}{self.iteration}"

    def render_view(self) -> None:
        if self.data is None:
            return
        has_data = bool(self.data.stats)
        self.query_one("#layers-body").display = has_data
        self.query_one("#layers-verdict").display = has_data
        empty = self.query_one("#layers-empty", Static)
        empty.display = not has_data
        if not has_data:
            self.query_one("#layers-head", Static).update("Layers: importance vs weight change per layer")
            when = self.data.analyze_when
            empty.update(plain(EMPTY.format(why=EMPTY_WHY.get(when, f' (this run: analyze.when = "{when}")'))))
            return
        view_name, module_key = MODULE_VIEWS[self.view]
        here = (self.iteration, self.checkpoint)
        stats = sorted((s for s in self.data.stats if (s.iteration, s.checkpoint) == here), key=lambda s: s.layer)
        rows = layer_values(stats, module_key, self.percent)
        scale = "% of total" if self.percent else "absolute"
        label = api.checkpoint_label(self.checkpoint)
        iterations = self.iterations()
        which = (f"Iteration {self.iteration} of {len(iterations)}" if iterations == list(range(1, len(iterations) + 1))
                 else f"Iteration {self.iteration} (analysed: {', '.join(map(str, iterations))})")
        self.query_one("#layers-head", Static).update(f"{which} · {label} · {scale} · {view_name}\n{key(self.percent)}")
        verdict = next((v for v in self.data.verdicts if (v.iteration, v.checkpoint) == here), None)
        self.query_one("#layers-verdict", Static).update(
            plain(verdict_text(verdict) if stats else f"No layer rows for {label} yet."))
        self.query_one(LayerChart).draw([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                        self.percent, f"{label}: importance vs weight change ({scale}, {view_name})")
        table = self.query_one(DataTable)
        row = table.cursor_row
        fill(table, ("layer", "importance", "Δ weight"),
             [(Text(str(n), justify="right"), Text(fmt(i, self.percent), justify="right"),
               Text(fmt(c, self.percent), justify="right")) for n, i, c in rows])
        if rows:
            table.move_cursor(row=min(row, len(rows) - 1))

    def action_iteration(self, step: int) -> None:
        iterations = self.iterations()
        if not iterations:
            return
        at = iterations.index(self.iteration) if self.iteration in iterations else 0
        self.iteration = iterations[max(0, min(len(iterations) - 1, at + step))]
        self.render_view()

    def action_checkpoint(self) -> None:
        self.kind = "merge" if self.kind == "sft" else "sft"
        self.render_view()

    def action_percent(self) -> None:
        self.percent = not self.percent
        self.render_view()

    def action_modules(self) -> None:
        self.view = (self.view + 1) % len(MODULE_VIEWS)
        self.render_view()
