"""Export a run to a file: results as Markdown, CSV or JSON, or the layer charts' data, the SFT
curves or the system history as CSV (engine.api.export writes it); the dialog says where it wrote,
or the engine's refusal. A path ending in .md, .csv or .json chooses that format; an existing file
is replaced only when the user says so."""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from engine import api
from engine.errors import UserError

from ..widgets.dialogs import ConfirmScreen
from ..widgets.plain import plain
from ..widgets.text_input import TextInput

# (what, format, label); layer data, the SFT curves and the system history exist as CSV only.
CHOICES = (("results", "md", "Results as Markdown"), ("results", "csv", "Results as CSV"),
           ("results", "json", "Results as JSON"), ("layers", "csv", "Layer data as CSV"),
           ("curves", "csv", "SFT curves (every optimizer step) as CSV"), ("system", "csv", "System history as CSV"))
HINT = "enter or ctrl+s writes the file; escape closes"


def default_path(run_id: str, what: str, fmt: str) -> str:
    return f"./{run_id}-{what}.{fmt}"


def named_format(path: str) -> str | None:
    """The format a path's extension names (md, csv, json), if any."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in ("md", "csv", "json") else None


def choice_for(path: str, choice: int) -> int | str:
    """The choice that writes `path`: `choice`, or the one its extension names (same data); a
    message when the extension names a format the chosen data has not."""
    what, fmt, label = CHOICES[choice]
    named = named_format(path)
    if named is None or named == fmt:
        return choice
    match = next((i for i, c in enumerate(CHOICES) if c[:2] == (what, named)), None)
    if match is None:
        return f"{label}: the path ends in .{named}; allowed: a .{fmt} path (or another extension)"
    return match


class FormatButton(RadioButton):
    """Only the chosen format shows its dot: Textual marks the chosen one by colour alone, which
    NO_COLOR and monochrome terminals lose."""

    @property
    def BUTTON_INNER(self) -> str:  # read by ToggleButton when it draws the button
        return "●" if self.value else " "


class FormatChoice(RadioSet):
    """The arrow keys choose (not only highlight) and enter writes, as the dialog's hint says."""

    # Own actions, not overrides of next_button/previous_button: RadioSet calls next_button on mount,
    # where a toggle turned the first choice off unseen and left two choices on after the next arrow.
    BINDINGS = [Binding("enter", "screen.export", "Export", show=False),
                Binding("down,right", "choose(1)", "Next format", show=False),
                Binding("up,left", "choose(-1)", "Previous format", show=False)]

    def action_choose(self, step: int) -> None:
        if step > 0:
            self.action_next_button()
        else:
            self.action_previous_button()
        self.action_toggle_button()


class ExportScreen(ModalScreen[str | None]):
    """Answers the path written (None when closed without writing)."""

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > Vertical { width: 76; max-width: 100%; height: auto; border: round $accent;
                              background: $surface; padding: 0 1; }
    ExportScreen RadioSet { width: 100%; }
    /* The focused one of the choice and the path has a heavy border, the other a thin one:
       seen without colour too (NO_COLOR), where Textual's focus is a colour change. */
    ExportScreen RadioSet, ExportScreen Input { border: round $border-blurred; }
    ExportScreen RadioSet:focus, ExportScreen Input:focus { border: heavy $border; }
    ExportScreen #export-result { height: auto; margin-top: 1; }
    ExportScreen .-error { color: $error; }
    ExportScreen Horizontal { height: auto; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("ctrl+s", "export", "Export")]

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id
        self.choice = 0
        self.written: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(plain(f"Export run {self.run_id}"))
            with FormatChoice(id="export-choice"):
                for i, (_, _, label) in enumerate(CHOICES):
                    yield FormatButton(label, value=i == 0, id=f"choice-{i}")
            yield TextInput(default_path(self.run_id, *CHOICES[0][:2]), id="export-path")
            yield Static(HINT, id="export-result", markup=False)
            with Horizontal():
                yield Button("Export", id="export", variant="primary", compact=True)
                yield Button("Close", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-choice").focus()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        path = self.query_one("#export-path", Input)
        # A path the user typed stays; the default one follows the chosen format.
        if path.value == default_path(self.run_id, *CHOICES[self.choice][:2]):
            path.value = default_path(self.run_id, *CHOICES[event.index][:2])
        self.choice = event.index

    def on_input_changed(self, event: Input.Changed) -> None:
        """A typed extension picks its format at once, so the choice shown is what gets written."""
        choice = choice_for(event.value, self.choice)
        if isinstance(choice, int) and choice != self.choice:
            self.query_one(f"#choice-{choice}", RadioButton).value = True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_export()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export":
            self.action_export()
        else:
            self.action_close()

    def action_close(self) -> None:
        self.dismiss(self.written)

    def action_export(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        choice = choice_for(path, self.choice)
        if isinstance(choice, str):
            self.result(choice, True)
            return
        what, fmt, _ = CHOICES[choice]
        target = Path(path).expanduser()
        if path and target.exists():
            def answered(yes: bool | None) -> None:
                if yes:
                    self.write(what, fmt, path)
                else:
                    self.result(f"kept {target}; nothing written", False)

            label = CHOICES[choice][2]
            self.app.push_screen(ConfirmScreen(f"{target} exists. Replace it with the {label[0].lower()}{label[1:]}?"),
                                 answered)
            return
        self.write(what, fmt, path)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def write(self, what: str, fmt: str, path: str) -> None:
        try:
            if not path:
                raise UserError("path: got ''; allowed: a file path")
            written = str(Path(api.export(self.run_id, fmt, what, home=self.app.home, path=path)).resolve())
        except UserError as exc:
            self.app.call_from_thread(self.result, str(exc), True)
        except OSError as exc:  # a missing folder, no permission
            self.app.call_from_thread(self.result, f"cannot write {path}: {exc.strerror or exc}", True)
        else:
            self.written = written
            self.app.call_from_thread(self.result, f"wrote {written}", False)

    def result(self, text: str, error: bool) -> None:
        result = self.query_one("#export-result", Static)
        result.update(plain(text))
        result.set_class(error, "-error")
