"""The command palette's imm commands (ctrl+p): every screen and action, and every run by id
(open, resume, stop, export), so a user can reach anything by typing part of its name."""
from __future__ import annotations

import asyncio
from functools import partial
from typing import Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.markup import escape

from engine import api
from engine.errors import RunStateError

from .widgets.plain import clean


class ImmCommands(Provider):
    async def startup(self) -> None:
        try:
            self.runs = await asyncio.to_thread(api.list_runs, self.app.home)
        except RunStateError:
            self.runs = []

    def commands(self) -> list[tuple[str, Callable, str]]:
        """(name, callback, help) of every command, screens first, then one group per run."""
        app = self.app
        out = [
            ("Runs", app.show_runs, "the table of runs"),
            ("New run", app.new_run, "pick a preset, edit, validate, launch"),
            ("System", app.show_system, "CPU, memory and GPUs"),
            ("Keys", app.action_help, "every key of this screen"),
            ("Quit", app.exit, "close the app (engines keep running)"),
        ]
        marked = getattr(app.screen, "marked", None)
        if marked:
            out.append(("Compare marked runs", partial(app.compare_runs, sorted(marked)), ", ".join(sorted(marked))))
        for run in self.runs:
            about = f"{run.status} · {run.method} · {run.name}"
            out += [
                (f"Open run {run.id}", partial(app.open_run, run.id), about),
                (f"Resume run {run.id}", partial(app.resume_run, run.id), about),
                (f"Stop run {run.id}", partial(app.stop_run, run.id), about),
                (f"Export run {run.id}", partial(app.export_run, run.id), about),
            ]
        return out

    async def discover(self) -> Hits:
        for name, callback, help in self.commands():
            if not name.startswith(("Resume", "Stop", "Export")):
                yield DiscoveryHit(Content(clean(name)), callback, text=name, help=_help(help))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(clean(name)), callback, text=name, help=_help(help))


def _help(text: str) -> str:
    """Help lines are read as markup: escape them (run names may hold brackets)."""
    return escape(clean(text))
