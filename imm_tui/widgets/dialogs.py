"""Small modal dialogs: a yes/no question and a one-line prompt. Push them with a callback:
`app.push_screen(ConfirmScreen("Stop run X?"), callback)`; the callback gets the answer."""
from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine import api
from engine.errors import UserError

from .plain import clean, plain
from .text_input import TextInput


class ConfirmScreen(ModalScreen[bool]):
    """A question answered with y (True) or n / escape (False)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, question: str):
        super().__init__(classes="dialog")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(plain(self.question), classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", id="yes", variant="error", compact=True)
                yield Button("No (n)", id="no", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen[str | None]):
    """One line of text: enter answers it (stripped), escape answers None. With `problem` (text ->
    what is wrong with it, or None), a refused answer keeps the dialog open with the error under
    the text as typed."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", value: str = "",
                 problem: Callable[[str], str | None] | None = None):
        super().__init__(classes="dialog")
        self.title_text, self.placeholder, self.value, self.problem = title, placeholder, value, problem

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(plain(self.title_text), classes="dialog-text")
            yield TextInput(self.value, placeholder=self.placeholder, compact=True, id="prompt")
            yield Static(id="prompt-error", classes="field-error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#prompt-error").display = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        problem = self.problem(event.value.strip()) if self.problem else None
        if problem:
            error = self.query_one("#prompt-error", Static)
            error.update(plain(problem))
            error.display = True
            return
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class PresetNameScreen(PromptScreen):
    """The name of a new preset, checked as the engine will (api.preset_path) before it closes."""

    def __init__(self, title: str, value: str):
        super().__init__(title, "preset name", value, problem=preset_name_problem)


def preset_name_problem(name: str) -> str | None:
    try:
        api.preset_path(name)
    except UserError as exc:
        return clean(exc)
    return None
