"""`?`: every key of the screen below (its focused widget, the screen and the app), with what it
does; the footer shows only the main ones."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label

from ..widgets.plain import plain


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("question_mark", "dismiss", "Close", show=False)]

    def __init__(self, screen: Screen):
        super().__init__(classes="dialog")
        self.below = screen

    def rows(self) -> list[tuple[str, str, str]]:
        """(key, description, where) of each described binding, once per action."""
        out, seen = [], set()
        # The screen's own keys first, then the app's, then the focused widget's.
        order = {self.below: 0, self.app: 1}
        for active in sorted(self.below.active_bindings.values(), key=lambda a: order.get(a.node, 2)):
            binding = active.binding
            if binding.description and (binding.action, binding.description) not in seen:
                seen.add((binding.action, binding.description))
                out.append((self.app.get_key_display(binding), binding.description, type(active.node).__name__))
        return out

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box help-box"):
            yield Label(plain("Keys (escape closes; ctrl+p finds any command by name)"), classes="dialog-text")
            table = DataTable(cursor_type="row", id="keys")
            table.add_columns("Key", "Does", "Where")
            table.add_rows([plain(k), plain(d), plain(w)] for k, d, w in self.rows())
            yield table
