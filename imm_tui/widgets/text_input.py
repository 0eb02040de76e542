"""The app's one-line text field: Textual's Input, with its own editing keys applied in the order
they were typed."""
from __future__ import annotations

from textual import events
from textual.widgets import Input


class TextInput(Input):
    """An Input whose editing keys (end, ctrl+u, backspace, arrows, enter...) act when they reach it.

    Textual's Input inserts a typed character as soon as the key reaches it, but runs a bound key
    only after the key has bubbled up to the app (textual#6605). When keys queue up (a busy
    machine, keys sent together), a character typed after ctrl+u was inserted before ctrl+u ran,
    which then deleted it: a typed path showed as an empty field. The widget's own bindings come
    first in the app's binding chain anyway (priority bindings are checked before the key gets
    here), so running them here changes only when they run, not which one runs.
    """

    async def _on_key(self, event: events.Key) -> None:
        await super()._on_key(event)  # a typed character is inserted (and the cursor's blink restarted)
        if event.is_printable:
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()
                return
