"""The Merge lab tab: re-merge a finished iteration with other (alpha, p), evaluate each trial
(a detached sweep engine does the work), watch the rows arrive, compare them as lines against
alpha and as an alpha x p grid, and adopt one as the iteration's merge."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from engine import api

from ..widgets.alpha_grid import AlphaGrid
from ..widgets.dialogs import ConfirmScreen, PromptScreen
from ..widgets.fmt import STATUS_STYLE
from ..widgets.live_poll import LivePoll
from ..widgets.plain import plain
from ..widgets.table_fill import fill

STEP = 0.1
GRID_ALPHAS = [round(STEP * i, 1) for i in range(1, 10)]  # g queues these at the current p
MAX_P = 0.9
NOTE = "α weights the BASE model: θ = α·base + (1−α)·(prev + DARE_p(sft − prev))"


@dataclass(frozen=True)
class LabData:
    detail: api.RunDetail
    trials: tuple[api.Trial, ...]


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def trial_metrics(t: api.Trial) -> dict[str, float]:
    """pass@1 of a trial: 'ID' (mean over in-domain tasks), 'OOD mean', and each task by name."""
    rows = [r for r in t.results if r.metric == "pass@1"]
    out = {r.task: r.value for r in rows}
    for name, domain in (("ID", api.Domain.ID), ("OOD mean", api.Domain.OOD)):
        v = mean([r.value for r in rows if r.domain == domain])
        if v is not None:
            out[name] = v
    return out


def value(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def trial_row(t: api.Trial) -> tuple[Text, ...]:
    m = trial_metrics(t)
    return (Text(str(t.id), justify="right"), Text(f"{t.alpha:g}"), Text(f"{t.drop_rate:g}"),
            Text(t.status, style=STATUS_STYLE.get(t.status, "")),
            Text(value(m.get("ID")), justify="right"), Text(value(m.get("OOD mean")), justify="right"),
            Text(str(t.subset or "all"), justify="right"),
            Text("" if t.seconds is None else f"{t.seconds:.0f}", justify="right"),
            Text("✓ adopted" if t.adopted else ""))


class TrialTable(DataTable):
    """The trials; enter and left / right are left to the pane (queue a trial, move alpha)."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("select_cursor", "cursor_left", "cursor_right"):
            return False
        return super().check_action(action, parameters)


class MergeLabPane(LivePoll, Vertical):
    DEFAULT_CSS = """
    MergeLabPane { height: 1fr; overflow-y: auto; }
    MergeLabPane #lab-head { height: auto; }
    MergeLabPane #lab-note { height: auto; color: $text-muted; }
    MergeLabPane #lab-trials { height: auto; max-height: 10; min-height: 3; }
    MergeLabPane #lab-detail { height: auto; max-height: 2; color: $text-muted; }
    MergeLabPane #lab-charts { height: 1fr; min-height: 14; }
    MergeLabPane #lab-plot { width: 1fr; height: 1fr; }
    MergeLabPane AlphaGrid { margin-left: 1; height: 1fr; max-height: 12; }
    """
    ALPHA, DROP = Binding.Group("α", compact=True), Binding.Group("p", compact=True)
    ITER = Binding.Group("iter", compact=True)
    BINDINGS = [
        Binding("enter", "queue", "Queue"),
        Binding("A", "adopt", "Adopt", key_display="A"),
        Binding("left", "alpha(-1)", "α-", key_display="←", group=ALPHA),
        Binding("right", "alpha(1)", "α+", key_display="→", group=ALPHA),
        Binding("comma", "drop(-1)", "p-", key_display=",", group=DROP),
        Binding("full_stop", "drop(1)", "p+", key_display=".", group=DROP),
        Binding("g", "queue_grid", "α grid"),
        Binding("n", "subset", "Subset"),
        Binding("v", "metric", "Metric"),
        Binding("left_square_bracket", "iteration(-1)", "Prev iter", group=ITER),
        Binding("right_square_bracket", "iteration(1)", "Next iter", group=ITER),
    ]
    poll_s = 1.0

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.data: LabData | None = None
        self.iteration: int | None = None
        self.alpha: float | None = None  # None until the run's config gives the defaults
        self.drop = 0.0
        self.subset = 0
        self.metric = "ID"

    def compose(self) -> ComposeResult:
        yield Static("Loading...", id="lab-head", markup=False)
        yield Static(NOTE, id="lab-note", markup=False)
        yield TrialTable(id="lab-trials", cursor_type="row", zebra_stripes=True)
        yield Static("", id="lab-detail", markup=False)
        with Horizontal(id="lab-charts"):
            yield PlotextPlot(id="lab-plot")
            yield AlphaGrid(id="lab-grid")

    def on_mount(self) -> None:
        self.start_polling()

    # ------------------------------------------------------------ data

    def read(self) -> LabData:
        return LabData(api.run_detail(self.run_id, home=self.app.home),
                       tuple(api.trials(self.run_id, home=self.app.home)))

    def show(self, data) -> None:
        if isinstance(data, Exception):
            self.query_one("#lab-head", Static).update(plain(f"Cannot read the run: {data}"))
            return
        first = self.data is None
        old, self.data = self.data, data
        if first:
            merge = data.detail.config.get("merge", {})
            self.alpha = float(merge.get("alpha", 0.5))
            self.drop = float(merge.get("drop_rate", 0.0))
        iterations = self.iterations()
        if iterations and self.iteration not in iterations:
            # the newest iteration with trials, else the newest that can have some
            self.iteration = max({t.iteration for t in data.trials} & set(iterations), default=iterations[-1])
        if old is None or old.trials != data.trials:
            self.render_trials()
        else:
            self.render_head()

    def iterations(self) -> list[int]:
        """Iterations a trial can re-merge: those with a finished SFT checkpoint."""
        if self.data is None:
            return []
        return sorted({s.iteration for s in self.data.detail.stages if s.stage == api.Stage.SFT and s.status == api.StageStatus.DONE})

    def trials(self) -> list[api.Trial]:
        return [t for t in self.data.trials if t.iteration == self.iteration] if self.data else []

    def highlighted(self) -> api.Trial | None:
        table = self.query_one(TrialTable)
        trials = self.trials()
        return trials[table.cursor_row] if 0 <= table.cursor_row < len(trials) else None

    # ------------------------------------------------------------ drawing

    def render_head(self) -> None:
        if self.data is None:
            return
        s = self.data.detail.summary
        if not self.iterations():
            head = "No iteration has finished SFT yet: trials re-merge a finished SFT checkpoint."
        else:
            subset = "the run's eval set" if self.subset == 0 else f"{self.subset} questions/task"
            head = (f"Iteration {self.iteration} · next trial: α {self.alpha:.1f}, p (drop) {self.drop:.1f}, {subset}"
                    f" · grid: {self.metric}")
        if s.status == "running":
            head += " · run is running: trials wait until it stops or finishes"
        elif s.sweep_running:
            head += " · sweep engine working"
        self.query_one("#lab-head", Static).update(plain(head))

    def render_trials(self) -> None:
        self.render_head()
        table = self.query_one(TrialTable)
        keep = self.highlighted()
        trials = self.trials()
        fill(table, ("id", "α", "p", "status", "ID", "OOD", "n", "secs", "adopted"),
             [trial_row(t) for t in trials], keys=[str(t.id) for t in trials])
        if keep is not None and any(t.id == keep.id for t in trials):
            table.move_cursor(row=table.get_row_index(str(keep.id)))
        self.render_detail()
        self.render_plot(trials)
        self.render_grid(trials)

    def render_detail(self) -> None:
        t = self.highlighted()
        if t is None:
            text = "No trials yet: set α (←/→) and p (, .), then enter queues one; g queues α 0.1..0.9 at this p."
        elif t.error:
            text = f"trial {t.id} failed: {t.error}"
        else:
            per_task = ", ".join(f"{r.domain.upper()} {r.task} {r.value:.1f}" for r in t.results if r.metric == "pass@1")
            text = f"trial {t.id}: α {t.alpha:g}, p {t.drop_rate:g}, seed {t.seed}" + (per_task and f": {per_task}")
        self.query_one("#lab-detail", Static).update(plain(text))

    def latest_done(self, trials: list[api.Trial]) -> dict[tuple[float, float], api.Trial]:
        """The newest finished trial per (alpha, p)."""
        return {(t.alpha, t.drop_rate): t for t in sorted(trials, key=lambda t: t.id) if t.status == api.TrialStatus.DONE}

    def render_plot(self, trials: list[api.Trial]) -> None:
        plt = self.query_one("#lab-plot", PlotextPlot).plt
        plt.clear_figure()
        plt.title("pass@1 % against α (one line per p)")
        done = self.latest_done(trials)
        for p in sorted({p for _, p in done}):
            points = sorted((a, trial_metrics(t)) for (a, q), t in done.items() if q == p)
            for name, marker in (("ID", "●"), ("OOD mean", "○")):
                xy = [(a, m[name]) for a, m in points if name in m]
                if xy:  # braille lines (4 rows a cell), the points marked; the key is in the x label
                    plt.plot([x for x, _ in xy], [y for _, y in xy], marker="braille")
                    plt.scatter([x for x, _ in xy], [y for _, y in xy], marker=marker)
        plt.xlim(0, 1)
        plt.xlabel("α (weight of the base) · ● ID  ○ OOD mean")
        self.query_one("#lab-plot", PlotextPlot).refresh()

    def metrics(self) -> list[str]:
        tasks = sorted({r.task for t in self.trials() for r in t.results})
        return ["ID", "OOD mean", *tasks]

    def render_grid(self, trials: list[api.Trial]) -> None:
        cells: dict[tuple[float, float], float | str] = {}
        for t in sorted(trials, key=lambda t: t.id):
            key = (t.alpha, t.drop_rate)
            v = trial_metrics(t).get(self.metric) if t.status == api.TrialStatus.DONE else None
            if v is not None:
                cells[key] = v
            elif not isinstance(cells.get(key), float):
                cells[key] = t.status
        self.query_one(AlphaGrid).show(cells)

    # ------------------------------------------------------------ keys

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.render_detail()

    def action_iteration(self, step: int) -> None:
        iterations = self.iterations()
        if iterations:
            at = iterations.index(self.iteration) if self.iteration in iterations else 0
            self.iteration = iterations[max(0, min(len(iterations) - 1, at + step))]
            self.render_trials()

    def action_alpha(self, step: int) -> None:
        if self.alpha is not None:
            self.alpha = round(min(1.0, max(0.0, self.alpha + step * STEP)), 1)
            self.render_head()

    def action_drop(self, step: int) -> None:
        self.drop = round(min(MAX_P, max(0.0, self.drop + step * STEP)), 1)
        self.render_head()

    def action_metric(self) -> None:
        names = self.metrics()
        self.metric = names[(names.index(self.metric) + 1) % len(names)] if self.metric in names else names[0]
        self.render_head()
        self.render_grid(self.trials())

    def action_subset(self) -> None:
        def answered(text: str | None) -> None:
            if text is None:
                return
            if not text.isdigit():
                self.notify(f"subset: got {text!r}; allowed: 0 (the run's eval set) or a number of questions",
                            severity="error", markup=False)
                return
            self.subset = int(text)
            self.render_head()

        self.app.push_screen(PromptScreen("Questions per task for new trials (0 = the run's whole eval set)",
                                          "0", str(self.subset)), answered)

    def action_queue(self) -> None:
        if self.alpha is not None:  # None until the run's config was read
            self.queue([self.alpha], [self.drop])

    def action_queue_grid(self) -> None:
        """α 0.1..0.9 at the current p, less those with a trial at that p (queued, running or done)
        and the run's own merge (its α and p)."""
        merge = self.data.detail.config.get("merge", {}) if self.data else {}
        own = (float(merge.get("alpha", -1)), float(merge.get("drop_rate", 0.0)))
        have = {(t.alpha, t.drop_rate) for t in self.trials() if t.status != "failed"} | {own}
        alphas = [a for a in GRID_ALPHAS if (a, self.drop) not in have]
        if not alphas:
            self.notify(f"Every α of the grid at p {self.drop:g} has a trial (or is the run's own merge).",
                        markup=False)
            return
        self.queue(alphas, [self.drop])

    def queue(self, alphas: list[float], drops: list[float]) -> None:
        if self.iteration is None or self.alpha is None:
            self.notify("No iteration with a finished SFT checkpoint to re-merge yet.", severity="warning")
            return
        run, t, subset, home = self.run_id, self.iteration, self.subset, self.app.home
        self.app.call_engine("sweep", lambda: api.start_sweep(run, t, alphas, drops, subset=subset, home=home),
                             on_done=self.queued)

    def queued(self, ids: list[int]) -> None:
        self.notify(f"queued trial{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}", markup=False)
        self.poll_now()

    def action_adopt(self) -> None:
        t = self.highlighted()
        if t is None:
            self.notify("Highlight a trial first.", severity="warning")
            return
        if t.status != api.TrialStatus.DONE:
            self.notify(f"Trial {t.id} is {t.status}; adopt a finished trial.", severity="warning", markup=False)
            return
        merge = f"Merge{t.iteration}"

        def answered(yes: bool | None) -> None:
            if yes:
                home = self.app.home
                self.app.call_engine(
                    f"adopt trial {t.id}", lambda: api.adopt_trial(self.run_id, t.iteration, t.id, home=home, detach=True),
                    changed=self.run_id,
                    on_done=lambda s: self.notify(
                        f"Adopting trial {t.id} as {merge} (engine pid {s.pid}): it re-merges and re-evaluates on "
                        "the full eval set; later stages go back to pending. Press r to resume once it is done.",
                        markup=False, timeout=10))

        self.app.push_screen(ConfirmScreen(
            f"Adopt trial {t.id} (α {t.alpha:g}, p {t.drop_rate:g}) as {merge}? {merge} is re-made and "
            f"re-evaluated; the stages after it go back to pending (resume continues from it)."), answered)
