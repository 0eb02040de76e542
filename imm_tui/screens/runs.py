"""The first screen: every run of the home folder in a live table (refreshed about once a second
in a thread worker; rows update in place and the cursor stays on its run).

The table's columns get widths computed here from their cells, not measured by the DataTable
when it is next idle: a table drawn before that measurement showed cut values (an OOD p@1 of
21.2 as `2`, ids as `wei`) until the window was resized. Where the columns do not all fit the
width, the less important ones are left out (the line under the table names the run in full)."""
from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from engine import api

from ..messages import RunChanged
from ..widgets.fmt import STATUS_STYLE, duration, percent, when
from ..widgets.footer import ImmFooter
from ..widgets.live_poll import LivePoll
from ..widgets.plain import plain
from ..widgets.text_input import TextInput

COLUMNS = [("mark", " "), ("id", "Run"), ("status", "Status"), ("stage", "Stage"), ("best_id", "ID p@1"),
           ("best_ood", "OOD p@1"), ("verdict", "Verdict"), ("elapsed", "Elapsed"), ("started", "Started"),
           ("name", "Name"), ("preset", "Preset"), ("method", "Method"), ("model", "Model")]
# Which columns stay when the width is short, most important first (shown in COLUMNS' order).
PRIORITY = ("mark", "id", "status", "best_id", "best_ood", "verdict", "stage", "elapsed", "started", "name",
            "preset", "method", "model")
CELL_PADDING = 1  # the DataTable's default, on each side of a cell
WELCOME = """No runs in {home} yet.

Press n to configure and launch a new run (start from the tiny-arith preset: it runs on a CPU in a few minutes), or run one from a shell:

    imm run tiny-arith \\
      --home {home}

It shows up here while it runs. ctrl+p finds any command, ? lists the keys."""


def stage_text(run: api.RunSummary) -> str:
    where = f"iter {run.iteration} {run.stage} " if run.stage else ""
    return f"{where}{run.stages_done}/{run.stages_total}"


def cells(run: api.RunSummary, marked: bool) -> tuple[Text, ...]:
    return (
        Text("*" if marked else " ", style="bold"),
        plain(run.id),
        plain(run.status, STATUS_STYLE.get(run.status, "")),
        plain(stage_text(run)),
        Text(percent(run.best_id), justify="right"),
        Text(percent(run.best_ood), justify="right"),
        plain(run.verdict or ""),
        Text(duration(run.elapsed), justify="right"),
        Text(when(run.started)),
        plain(run.name),
        plain(run.preset),
        plain(run.method),
        plain(run.model),
    )


def column_widths(rows: list[tuple[Text, ...]]) -> dict[str, int]:
    """Each column's width: its widest cell or its label."""
    return {key: max([cell_len(label), *(cell_len(row[i].plain) for row in rows)])
            for i, (key, label) in enumerate(COLUMNS)}


def fitting_columns(widths: dict[str, int], room: int) -> list[str]:
    """The columns that fit `room` cells, taken in PRIORITY order (a column that does not fit is
    left out, a smaller later one may still fit), in COLUMNS' order. The run id always shows."""
    kept, used = set(), 0
    for key in PRIORITY:
        need = widths[key] + 2 * CELL_PADDING
        if used + need <= room or key in ("mark", "id"):
            kept.add(key)
            used += need
    return [key for key, _ in COLUMNS if key in kept]


def stoppable(app, run: api.RunSummary) -> bool:
    """A run whose engine may be running (running, or created and starting); else says why not."""
    if run.status in (api.RunStatus.RUNNING, api.RunStatus.CREATED):
        return True
    app.notify(f"{run.id} is {run.status}: no engine runs it, nothing to stop", markup=False)
    return False


def about(run: api.RunSummary) -> str:
    """The line under the table for the highlighted run (with what a narrow table leaves out)."""
    line = (f"{run.id} · {run.name} · {run.preset} · {run.method} · {run.model}\n{run.status} · {stage_text(run)}"
            f" · elapsed {duration(run.elapsed)} · started {when(run.started)}")
    if run.status == api.RunStatus.INTERRUPTED:
        line += f"\ninterrupted: its engine (pid {run.pid}) is gone; r resumes from the unfinished stage"
    if run.status == api.RunStatus.MISSING:
        line += f"\nmissing: its folder {run.run_dir} is gone (deleted or moved by hand); nothing more can run on it"
    if run.error:
        line += f"\nerror: {run.error}"
    if run.sweep_running:
        line += "\na merge-lab sweep is running"
    return line


class RunsTable(DataTable):
    # Home / End go to the first / last run (the DataTable's own scroll sideways in row mode).
    BINDINGS = [Binding("enter", "select_cursor", "Open"),
                Binding("home", "scroll_top", "First run", show=False),
                Binding("end", "scroll_bottom", "Last run", show=False)]


class RunsScreen(LivePoll, Screen):
    AUTO_FOCUS = "#runs"
    BINDINGS = [
        Binding("n", "new_run", "New"),
        Binding("r", "resume", "Resume"),
        Binding("s", "stop", "Stop"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("e", "export", "Export"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("S", "system", "System"),
    ]

    poll_s = 1.0
    ON_A_RUN = {"resume", "stop", "mark", "compare", "export", "filter", "clear_filter"}  # hidden while the home has none

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[api.RunSummary] = []
        self.marked: set[str] = set()
        self._shown: list[str] = []
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._layout: list[tuple[str, int]] = []  # the table's (column, width)s

    def compose(self) -> ComposeResult:
        yield Header()
        yield TextInput(placeholder="filter: id, name, preset, method, status", id="filter", compact=True)
        yield Static(id="welcome", markup=False)
        yield RunsTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static(id="run-info", markup=False)
        yield ImmFooter()

    def on_screen_resume(self) -> None:
        self.poll_now()

    def on_run_changed(self, _: RunChanged) -> None:
        self.poll_now()

    # ------------------------------------------------------------ live data
    def read(self) -> list[api.RunSummary]:
        return api.list_runs(self.app.home)

    def show(self, runs: list[api.RunSummary] | Exception) -> None:
        if isinstance(runs, Exception):
            self.query_one("#run-info", Static).update(plain(f"error: {runs}", "bold red"))
        else:
            if bool(runs) != bool(self.runs):
                self.refresh_bindings()
            self.runs = runs
            self.draw()

    def draw(self) -> None:
        """Put the filtered runs in the table: in place when the same runs show in the same order."""
        table = self.query_one(RunsTable)
        query = self.query_one("#filter", Input).value.strip().lower()
        runs = [r for r in self.runs if not query or any(query in f.lower() for f in
                                                          (r.id, r.name, r.preset, r.method, r.status))]
        welcome = self.query_one("#welcome", Static)
        welcome.display = not self.runs
        table.display = bool(self.runs)
        if not self.runs:
            welcome.update(plain(WELCOME.format(home=self.app.home)))
        if not runs and self.runs:
            welcome.display = True
            welcome.update(plain(f"No run matches the filter {query!r}: escape clears it."))
        ids = [r.id for r in runs]
        rows = {r.id: cells(r, r.id in self.marked) for r in runs}
        widths = column_widths(list(rows.values()))
        layout = [(key, widths[key]) for key in fitting_columns(widths, self._room(len(ids)))]
        index = {key: i for i, (key, _) in enumerate(COLUMNS)}
        if ids != self._shown or layout != self._layout:
            current = self.current_id()
            table.clear(columns=layout != self._layout)
            if not table.columns:
                for key, width in layout:
                    table.add_column(dict(COLUMNS)[key], key=key, width=width)
            for run_id in ids:
                table.add_row(*[rows[run_id][index[key]] for key, _ in layout], key=run_id)
            if current in ids:
                table.move_cursor(row=ids.index(current), animate=False)
        else:
            for run_id, row in rows.items():
                for key, _ in layout:
                    if row[index[key]] != self._cells[run_id][index[key]]:
                        table.update_cell(run_id, key, row[index[key]])
        self._shown, self._cells, self._layout = ids, rows, layout
        self.show_about()

    def _room(self, rows: int) -> int:
        """The cells the table's columns may take: the screen's width, less the vertical
        scrollbar when the rows (and the header) are more than the table's height."""
        table = self.query_one(RunsTable)
        width = self.size.width or self.app.size.width
        if rows + 1 > (table.size.height or self.app.size.height):
            width -= table.styles.scrollbar_size_vertical
        return width

    def on_resize(self) -> None:
        if self.runs:
            self.draw()

    def current_id(self) -> str | None:
        table = self.query_one(RunsTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def current(self) -> api.RunSummary | None:
        run_id = self.current_id()
        return next((r for r in self.runs if r.id == run_id), None)

    @on(DataTable.RowHighlighted)
    def show_about(self) -> None:
        run = self.current()
        self.query_one("#run-info", Static).update(plain(about(run) if run else ""))

    # ------------------------------------------------------------ keys
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return bool(self.runs) or action not in self.ON_A_RUN

    @on(DataTable.RowSelected)
    def open_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(event.row_key.value)

    def _with_run(self, action) -> None:
        run_id = self.current_id()
        if run_id is None:
            self.notify("No run shown: the filter matches none (escape clears it).", severity="warning")
        else:
            action(run_id)

    def action_new_run(self) -> None:
        self.app.new_run()

    def action_system(self) -> None:
        self.app.show_system()

    def action_resume(self) -> None:
        self._with_run(self.app.resume_run)

    def action_stop(self) -> None:
        run = self.current()
        if run is not None and not stoppable(self.app, run):
            return
        self._with_run(self.app.stop_run)

    def action_export(self) -> None:
        self._with_run(self.app.export_run)

    def action_mark(self) -> None:
        run_id = self.current_id()
        if run_id is not None:
            self.marked ^= {run_id}
            self.draw()
            self.query_one(RunsTable).action_cursor_down()

    def action_compare(self) -> None:
        self.app.compare_runs([r.id for r in self.runs if r.id in self.marked])

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.query_one(RunsTable).focus()
        self.draw()

    @on(Input.Changed, "#filter")
    def filter_changed(self) -> None:
        self.draw()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.query_one(RunsTable).focus()

