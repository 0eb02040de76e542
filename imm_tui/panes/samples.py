"""The samples tab of a run: what the model generated (graded, kept or not), what SFT trained on
(kept) and how checkpoints answered (eval:CHECKPOINT), one iteration at a time; the highlighted
sample in full below. Keys: g set, f correct / wrong / all, t task, [ ] iteration, < > page."""
from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from engine import api

from ..widgets.plain import clean, plain
from ..widgets.table_fill import fill

CAP = 2000  # rows a page shows (< and > page through the rest)
VERDICTS = ("all", "correct", "wrong")
MARK = {True: "✓", False: "✗", None: "·"}
COLUMNS = ("id", "task", "ok", "kept", "extracted", "gold", "completion")


def first_line(s: str, width: int = 60) -> str:
    line = s.strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def sample_detail(s: api.Sample) -> str:
    return "\n".join([
        f"{s.id} · {s.task} · correct: {MARK[s.correct]}" + ("" if s.kept is None else f" · kept: {MARK[s.kept]}")
        + ("" if s.temperature is None else f" · temperature {s.temperature:g}"),
        f"question: {s.question}",
        f"extracted: {s.extracted if s.extracted is not None else '(none)'} · gold: {s.gold}",
        "completion:",
        s.completion,
    ])


class SamplesPane(Vertical):
    DEFAULT_CSS = """
    SamplesPane { height: 1fr; }
    SamplesPane > #samples-note { height: auto; max-height: 2; color: $text-muted; }
    SamplesPane > DataTable { height: 1fr; }
    SamplesPane > VerticalScroll { height: 1fr; border-top: solid $primary; }
    """
    BINDINGS = [
        Binding("g", "next_set", "Sample set"),
        Binding("f", "next_verdict", "Correct/wrong"),
        Binding("t", "next_task", "Task"),
        Binding("left_square_bracket", "iteration(-1)", "Prev iter"),
        Binding("right_square_bracket", "iteration(1)", "Next iter"),
        Binding("less_than_sign", "page(-1)", "Prev page", key_display="<"),
        Binding("greater_than_sign", "page(1)", "Next page", key_display=">"),
    ]

    class Loaded(Message):
        def __init__(self, iteration: int, sets: list[str], which: str | None, samples: list[api.Sample],
                     error: str | None = None):
            super().__init__()
            self.iteration, self.sets, self.which, self.samples, self.error = iteration, sets, which, samples, error

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.iterations = 0  # the run's iteration count; 0 until the detail arrives
        self.iteration = 1
        self.sets: list[str] = []
        self.which: str | None = None  # the set shown (generated, kept, eval:CHECKPOINT)
        self.samples: list[api.Sample] = []
        self.shown: list[api.Sample] = []
        self.verdict_filter = "all"
        self.task_filter = "all"
        self.page = 0  # of CAP rows
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("samples: waiting for the run's detail", id="samples-note", markup=False)
        yield DataTable(cursor_type="row", zebra_stripes=True, id="samples-table")
        with VerticalScroll(id="sample-scroll"):
            yield Static("", id="sample-detail", markup=False)

    def show(self, detail: api.RunDetail) -> None:
        """The detail screen's poll: the run's iteration count; loads once the tab is seen."""
        self.iterations = int(detail.config.get("iterations", 1))
        if not self.loaded and self.is_on_screen:
            self.load()

    def on_show(self) -> None:
        if not self.loaded and self.iterations:
            self.load()

    def load(self, which: str | None = None) -> None:
        self.loaded = True
        self.query_one("#samples-note", Static).update(f"loading iteration {self.iteration} samples…")
        self._read(self.iteration, which or self.which)

    @work(thread=True, exclusive=True, group="samples", exit_on_error=False)
    def _read(self, iteration: int, want: str | None) -> None:
        home = self.app.home
        try:
            sets = api.sample_sets(self.run_id, iteration, home=home)
            which = want if want in sets else (sets[0] if sets else None)
            samples = api.samples(self.run_id, iteration, which, home=home) if which else []
        except Exception as exc:  # noqa: BLE001 - a file being written or a busy database: say so
            self.post_message(self.Loaded(iteration, [], None, [], str(exc) or type(exc).__name__))
            return
        self.post_message(self.Loaded(iteration, sets, which, samples))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        if event.iteration != self.iteration:
            return  # the user stepped on meanwhile
        self.sets, self.which, self.samples = event.sets, event.which, event.samples
        self.page = 0
        if self.task_filter not in self.tasks:
            self.task_filter = "all"
        self.draw(error=event.error)

    @property
    def tasks(self) -> list[str]:
        return ["all", *sorted({s.task for s in self.samples})]

    def matching(self) -> list[api.Sample]:
        return [s for s in self.samples
                if (self.verdict_filter == "all" or s.correct is (self.verdict_filter == "correct"))
                and (self.task_filter == "all" or s.task == self.task_filter)]

    def draw(self, error: str | None = None) -> None:
        matching = self.matching()
        self.page = min(self.page, max(len(matching) - 1, 0) // CAP)
        self.shown = matching[self.page * CAP:(self.page + 1) * CAP]
        if error:
            note = f"iter {self.iteration}: {clean(error)}"
        elif not self.sets:
            note = f"iter {self.iteration} of {self.iterations}: no samples yet · [ ] iteration"
        else:
            first = self.page * CAP
            count = (f"rows {first + 1:,}-{first + len(self.shown):,} of {len(matching):,} (< > page)"
                     if len(matching) > CAP else f"{len(matching):,} of {len(self.samples):,}")
            note = (f"iter {self.iteration}/{self.iterations} · {self.which} ({self.sets.index(self.which or '') + 1}/"
                    f"{len(self.sets)}) · {self.verdict_filter} · task {self.task_filter} · {count}")
        self.query_one("#samples-note", Static).update(clean(note))
        fill(self.query_one(DataTable), COLUMNS,
             [[plain(s.id), plain(s.task), plain(MARK[s.correct]), plain(MARK[s.kept]),
               plain(s.extracted if s.extracted is not None else ""), plain(s.gold),
               plain(first_line(s.completion))] for s in self.shown])
        self.show_sample(0)

    @on(DataTable.RowHighlighted, "#samples-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_sample(event.cursor_row)

    def show_sample(self, row: int) -> None:
        text = sample_detail(self.shown[row]) if 0 <= row < len(self.shown) else ""
        self.query_one("#sample-detail", Static).update(clean(text))

    # ---------------------------------------------------------------- keys

    def action_next_set(self) -> None:
        if len(self.sets) > 1:
            self.load(self.sets[(self.sets.index(self.which or '') + 1) % len(self.sets)])

    def action_next_verdict(self) -> None:
        self.verdict_filter = VERDICTS[(VERDICTS.index(self.verdict_filter) + 1) % len(VERDICTS)]
        self.page = 0
        self.draw()

    def action_next_task(self) -> None:
        tasks = self.tasks
        self.task_filter = tasks[(tasks.index(self.task_filter) + 1) % len(tasks)]
        self.page = 0
        self.draw()

    def action_page(self, step: int) -> None:
        pages = max(-(-len(self.matching()) // CAP), 1)
        if 0 <= self.page + step < pages:
            self.page += step
            self.draw()

    def action_iteration(self, step: int) -> None:
        if self.iterations:
            self.iteration = (self.iteration + step) % (self.iterations + 1)  # 0 holds eval:base
            self.load()
