"""`?`: every key of the screen below (its focused widget, the screen and the app), with what it
does; the footer shows only the main ones."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.app import App
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Label, TabPane

from ..widgets.plain import plain
from ..widgets.table_fill import fill


def where(node) -> str:
    """Where a key works, in words: anywhere, this screen, or the part of it that has the focus."""
    if isinstance(node, App):
        return "anywhere"
    if isinstance(node, Screen):
        return "this screen"
    tab = next((a for a in node.ancestors if isinstance(a, TabPane)), None)
    part = "text field" if isinstance(node, Input) else "table" if isinstance(node, DataTable) else "focused part"
    if tab is not None:  # the tab's id names it (merge-lab: Merge lab)
        name = (tab.id or "").replace("-", " ").capitalize()
        return f"{name} tab" if node.parent is tab else f"{name} tab, {part}"
    return part


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("question_mark", "dismiss", "Close", show=False)]

    def __init__(self, screen: Screen):
        super().__init__(classes="dialog")
        self.below = screen

    def rows(self) -> list[tuple[str, str, str]]:
        """(keys, description, where) of each described binding, once per action (its keys
        together: q, ^q)."""
        found: dict[tuple, tuple[list[str], str, str]] = {}
        # The screen's own keys first, then the app's, then the focused widget's.
        order = {self.below: 0, self.app: 1}
        for active in sorted(self.below.active_bindings.values(), key=lambda a: order.get(a.node, 2)):
            binding = active.binding
            if binding.description:
                keys, _, _ = found.setdefault((binding.action, binding.description),
                                              ([], binding.description, where(active.node)))
                if (key := self.app.get_key_display(binding)) not in keys:
                    keys.append(key)
        return [(", ".join(keys), description, place) for keys, description, place in found.values()]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box help-box"):
            yield Label(plain("Keys (escape closes; ctrl+p finds any command by name)"), classes="dialog-text")
            table = DataTable(cursor_type="row", id="keys")
            fill(table, ("Key", "Does", "Where"),
                 [[plain(k), plain(d), plain(w)] for k, d, w in self.rows()])
            yield table
