"""Textual's Footer, drawn the same, without its per-focus cost and leak.

Textual 8.2.8's Footer recomposes (a new FooterKey per shown binding, each styled twice) after
every `bindings_updated` signal, which fires on every focus change: switching a run's tab
changes focus two or three times, so the footer was rebuilt that often per key press, and
each rebuilt FooterKey stayed alive through its `data_bind(compact=...)` watcher on the Footer
(textual#6666: watchers on a long-lived object are pruned only when that attribute changes).

This footer rebuilds at most once per refresh, only when the keys it would show (or its width)
changed, and gives its keys their `compact` value directly (no watcher on the Footer, so nothing
leaks). Where the keys do not fit the width, it leaves out the last ones (the app's and the
screen's, after the focused pane's), never `? Keys` (which lists them all) nor `q Quit`: Textual's
Footer cut the line wherever the width ended.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import groupby

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup

KEPT = ("help", "quit")  # actions the footer always shows
PALETTE_WIDTH = 13  # "▏ ^p palette " docked at the right


def key_width(binding, display: str) -> int:
    """Cells a FooterKey takes: " key " and "description "."""
    return len(display) + 2 + (len(binding.description) + 1 if binding.description else 0)


def fitting(actions: dict, width: int, display) -> dict:
    """The actions (in order) whose keys fit the width, the last ones left out first, KEPT never."""
    actions = dict(actions)
    droppable = [a for a in actions if a not in KEPT]
    while droppable and sum(key_width(b[0][0], display(b[0][0])) for b in actions.values()) > width:
        del actions[droppable.pop()]
    return actions


class ImmFooter(Footer):
    """A Footer that recomposes only when the shown bindings change."""

    _shown: tuple | None = None  # the signature of what the footer shows now
    _pending = False  # a recompose is queued for after the next refresh

    def _signature(self) -> tuple:
        active = self.screen.active_bindings
        shown = tuple((b.key, self.app.get_key_display(b), b.description, b.action, enabled, tooltip,
                       b.group.description if b.group else None, b.group.compact if b.group else None)
                      for (_, b, enabled, tooltip) in active.values() if b.show)
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        palette = (palette[1].key, palette[2], palette[1].tooltip) if palette else None
        return shown, palette, self.compact, self.show_command_palette, self.combine_groups, self.app.size.width

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._pending:
            self._pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._pending = False
        if not self.is_attached:
            return
        signature = self._signature()
        if signature != self._shown:
            self._shown = signature
            await self.recompose()

    def on_resize(self) -> None:
        if not self._pending:
            self._pending = True
            self.call_after_refresh(self._recompose_if_changed)

    def _key(self, *args, **kw) -> FooterKey:
        key = FooterKey(*args, **kw)
        # What data_bind(compact=Footer.compact) would give it, without a watcher on the Footer.
        key.set_reactive(FooterKey.compact, self.compact)
        key.set_class(self.compact, "-compact", update=False)
        return key

    def watch_compact(self, compact: bool) -> None:
        for key in self.query(FooterKey):
            key.compact = compact

    def compose(self) -> ComposeResult:
        """Footer.compose (textual 8.2.8) with self._key for FooterKey(...).data_bind(...), and the
        keys that fit."""
        if not self._bindings_ready:
            return
        active_bindings = self.screen.active_bindings
        bindings = [
            (binding, enabled, tooltip)
            for (_, binding, enabled, tooltip) in active_bindings.values()
            if binding.show
        ]
        action_to_bindings = defaultdict(list)
        for binding, enabled, tooltip in bindings:
            action_to_bindings[binding.action].append((binding, enabled, tooltip))

        width = self.app.size.width - PALETTE_WIDTH * (self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE)
        action_to_bindings = fitting(action_to_bindings, width, self.app.get_key_display)
        self.styles.grid_size_columns = len(action_to_bindings)

        for group, multi_bindings_iterable in groupby(
            action_to_bindings.values(),
            lambda multi_bindings_: multi_bindings_[0][0].group,
        ):
            multi_bindings = list(multi_bindings_iterable)
            if group is not None and len(multi_bindings) > 1:
                with KeyGroup(classes="-compact" if group.compact else ""):
                    for multi_bindings in multi_bindings:
                        binding, enabled, tooltip = multi_bindings[0]
                        yield self._key(binding.key, self.app.get_key_display(binding), "", binding.action,
                                        disabled=not enabled, tooltip=tooltip or binding.description,
                                        classes="-grouped")
                yield FooterLabel(group.description)
            else:
                for multi_bindings in multi_bindings:
                    binding, enabled, tooltip = multi_bindings[0]
                    yield self._key(binding.key, self.app.get_key_display(binding), binding.description,
                                    binding.action, disabled=not enabled, tooltip=tooltip)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            try:
                _node, binding, enabled, tooltip = active_bindings[self.app.COMMAND_PALETTE_BINDING]
            except KeyError:
                pass
            else:
                yield FooterKey(
                    binding.key,
                    self.app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    classes="-command-palette",
                    disabled=not enabled,
                    tooltip=binding.tooltip or binding.description,
                )
