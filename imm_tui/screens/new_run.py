"""New run: pick a preset, edit the fields that matter, see the engine's own validation next to
each field and the dry-run plan, then launch a detached engine or save the settings as a preset.

Only fields that differ from the preset become overrides (`key.path=value`, as `imm run --set`),
so what is launched is exactly the preset plus what the user changed.
"""
from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Header, Input, Label, Select, Static

from engine import api
from engine.errors import UserError

from ..widgets.dialogs import ConfirmScreen, PresetNameScreen
from ..widgets.footer import ImmFooter
from ..widgets.plain import plain
from ..widgets.text_input import TextInput

DEFAULT_PRESET = "tiny-arith"
VALIDATE_AFTER = 0.3  # seconds of no typing before the engine checks the form
EXTRA = "extra"  # the free `key=value; key=value` field
FIELDS = [
    ("model.path", "Model"),
    ("tasks.id", "In-domain task"),
    ("tasks.ood", "OOD tasks"),
    ("method", "Method"),
    ("iterations", "Iterations"),
    ("generation.k", "Samples per question k"),
    ("generation.temperatures", "Temperatures"),
    ("merge.alpha", "Merge alpha"),
    ("merge.drop_rate", "Drop rate p"),
    ("seed", "Seed"),
    ("sft.epochs", "SFT epochs"),
    ("sft.lr", "SFT learning rate"),
    ("sft.batch_size", "SFT batch size"),
    ("generation.backend", "Generation backend"),
    ("sft.backend", "SFT backend"),
    ("sft.num_gpus", "SFT GPUs"),
]


def field_id(path: str) -> str:
    return "f-" + path.replace(".", "-")


def lookup(config: dict, path: str):
    node = config
    for part in path.split("."):
        node = node[part]
    return node


def shown(value) -> str:
    """A config value as the form shows it: lists comma-separated."""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def quoted(text: str) -> str:
    """A TOML string of text as typed: non-ASCII stays itself (an emoji as \\ud83d\\ude00 is no
    valid TOML, so the engine would see, and show back, the escapes)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML wants DEL escaped too


def assignment(path: str, text: str, original) -> str:
    """The override for a field's text, typed like the preset's value (strings quoted, lists of
    strings quoted item by item), so the engine sees what the user meant."""
    text = text.strip()
    if isinstance(original, list):
        items = [i.strip() for i in text.split(",") if i.strip()]
        strings = any(isinstance(v, str) for v in original)
        return f"{path}=[{', '.join(quoted(i) if strings else i for i in items)}]"
    if isinstance(original, str):
        return f"{path}={quoted(text)}"
    return f"{path}={text}"


def field_of(entry: str) -> str | None:
    """The label of the form field a More entry `key=value` would set (its key is the field's path,
    or a table holding it, e.g. merge={alpha=0.3}); None for a key without a field."""
    key = entry.partition("=")[0].strip()
    return next((label for path, label in FIELDS if path == key or path.startswith(key + ".")), None)


def form_field(error_field: str) -> str:
    """tasks.ood[1] -> tasks.ood: the form field an engine error belongs to."""
    return re.sub(r"\[\d+\]$", "", error_field)


class NewRunScreen(Screen):
    AUTO_FOCUS = "#preset"
    BINDINGS = [
        Binding("ctrl+r", "launch", "Launch", priority=True),
        Binding("ctrl+d", "dry_run", "Dry run", priority=True),
        Binding("ctrl+s", "save_preset", "Save preset", priority=True),
        Binding("escape", "back", "Back"),
    ]

    class Checked(Message):
        """The engine's verdict on the form: errors, and the dry-run plan when there are none."""

        def __init__(self, generation: int, errors: list[api.FieldError], plan: str | None) -> None:
            super().__init__()
            self.generation, self.errors, self.plan = generation, errors, plan

    def __init__(self) -> None:
        super().__init__()
        self.preset: str | None = None  # the chosen preset's path
        self.config: dict = {}  # its resolved config: the fields' starting values
        self.errors: list[api.FieldError] = []
        self._generation = 0  # the latest check asked for: older answers are dropped
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="new-run-body"):
            with VerticalScroll(id="new-run-form"):
                with Horizontal(classes="field"):
                    yield Label("Preset", classes="field-label")
                    yield self._preset_select()
                for path, label in FIELDS:
                    with Horizontal(classes="field"):
                        yield Label(label, classes="field-label")
                        yield TextInput(id=field_id(path), compact=True)
                    yield Static(id="e-" + field_id(path), classes="field-error", markup=False)
                with Horizontal(classes="field"):
                    yield Label("More (--set)", classes="field-label")
                    yield TextInput(id=field_id(EXTRA), compact=True, placeholder="key=value; key=value")
                yield Static(id="e-" + field_id(EXTRA), classes="field-error", markup=False)
                with Horizontal(id="new-run-buttons"):
                    yield Button("Launch ^r", id="launch", variant="success", compact=True)
                    yield Button("Dry run ^d", id="dry-run-button", compact=True)
                    yield Button("Save preset ^s", id="save", compact=True)
            with VerticalScroll(id="dry-run-box"):
                yield Static("The dry-run plan shows here once the settings are valid.", id="dry-run", markup=False)
        yield ImmFooter()

    # ------------------------------------------------------------ presets and prefill
    def _preset_select(self) -> Select:
        """The presets, the default chosen. Listed here, not in a worker (two small folders): a
        list filled later offered its placeholder ("loading presets") as a choice."""
        presets = api.presets(self.app.home)
        default = next((p for p in presets if p.name == DEFAULT_PRESET), presets[0] if presets else None)
        return Select([(plain(f"{p.name} ({p.source})"), str(p.path)) for p in presets], id="preset", compact=True,
                      prompt="no presets found", allow_blank=default is None,
                      value=str(default.path) if default else Select.NULL)

    @on(Select.Changed, "#preset")
    def preset_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or event.value == self.preset:
            return
        if not self.edited():
            self._switch_to(event.value)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._switch_to(event.value)
            else:  # back to the preset the edits were made on
                self.query_one("#preset", Select).value = self.preset

        self.app.push_screen(ConfirmScreen(f"Drop your {len(self.edited())} edit(s) and load preset "
                                           f"{Path(event.value).stem}?"), answered)

    def _switch_to(self, preset: str) -> None:
        """A new preset starts clean: every field from it, More emptied (no edit carried over)."""
        self.preset, self.config = preset, {}
        self.query_one("#" + field_id(EXTRA), Input).value = ""
        self.load_config(preset)

    def edited(self) -> list[str]:
        """What the user changed from the loaded preset (fields and More entries)."""
        return self.overrides() + self.refused() if self.config else []

    def action_back(self) -> None:
        """Back to the runs; edits are dropped only when the user says so."""
        if not self.edited():
            self.app.pop_screen()
            return
        self.app.push_screen(ConfirmScreen(f"Drop your {len(self.edited())} edit(s) and leave New run?"),
                             lambda yes: self.app.pop_screen() if yes and self.is_current else None)

    @work(thread=True, exclusive=True, group="presets", exit_on_error=False)
    def load_config(self, preset: str) -> None:
        try:
            config = api.resolved_config(preset)
        except UserError as exc:
            self.app.call_from_thread(self._show_errors, [api.FieldError("preset", preset, str(exc))])
            return
        self.app.call_from_thread(self._prefill, preset, config)

    def _prefill(self, preset: str, config: dict) -> None:
        if preset != self.preset:
            return
        self.config = config
        for path, _ in FIELDS:
            self.query_one("#" + field_id(path), Input).value = shown(lookup(config, path))
        self.check_soon(0)

    # ------------------------------------------------------------ validation and dry run
    def overrides(self) -> list[str]:
        """The fields changed from the preset, as key.path=value, then the free ones (but those
        refused: see refused)."""
        out = []
        for path, _ in FIELDS:
            original = lookup(self.config, path)
            text = self.query_one("#" + field_id(path), Input).value
            if text.strip() != shown(original):
                out.append(assignment(path, text, original))
        return out + [a for a in self.more() if not field_of(a)]

    def more(self) -> list[str]:
        """The `key=value` entries of More."""
        return [a.strip() for a in self.query_one("#" + field_id(EXTRA), Input).value.split(";") if a.strip()]

    def refused(self) -> list[str]:
        """More entries for a key that has its own field: one place per setting, so they are
        refused (launching them would silently override what the field shows)."""
        return [a for a in self.more() if field_of(a)]

    def more_errors(self) -> list[api.FieldError]:
        return [api.FieldError(a.partition("=")[0].strip(), a.partition("=")[2].strip(),
                               f"set in its own field above ({field_of(a)}), not in More")
                for a in self.refused()]

    @on(Input.Changed)
    def field_changed(self) -> None:
        if self.config:
            self.check_soon(VALIDATE_AFTER)

    def check_soon(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._generation += 1
        check = partial(self.check, self._generation, self.preset, self.overrides(), self.more_errors())
        # Never a zero-delay timer: Textual 8.2.8's timer divides by its delay (textual#6370).
        self._timer = self.set_timer(delay, check) if delay > 0 else None
        if delay <= 0:
            check()

    @work(thread=True, group="check", exit_on_error=False)
    def check(self, generation: int, preset: str, overrides: list[str], refused: list[api.FieldError]) -> None:
        errors = refused + api.validate(preset, overrides)
        plan = None
        if not errors:
            try:
                plan = api.dry_run(preset, overrides)
            except UserError as exc:
                errors = [api.FieldError("preset", preset, str(exc))]
        self.post_message(self.Checked(generation, errors, plan))

    def on_new_run_screen_checked(self, message: Checked) -> None:
        if message.generation != self._generation:
            return
        self._show_errors(message.errors)
        if message.plan is not None:
            self.query_one("#dry-run", Static).update(plain(message.plan))

    def _show_errors(self, errors: list[api.FieldError]) -> None:
        """Each error where its value was typed: next to its field, or under `More` for a key
        typed there (or a key the form has no field for)."""
        self.errors = errors
        by_field: dict[str, list[str]] = {}
        known = {path for path, _ in FIELDS}
        typed_in_more = {a.partition("=")[0].strip() for a in self.more()}
        for e in errors:
            where = form_field(e.field)
            in_field = where in known and e.field not in typed_in_more and where not in typed_in_more
            by_field.setdefault(where if in_field else EXTRA, []).append(e.message)
        for path in [p for p, _ in FIELDS] + [EXTRA]:
            box = self.query_one("#e-" + field_id(path), Static)
            box.update(plain("\n".join(by_field.get(path, []))))
            box.display = path in by_field
        if errors:
            self.query_one("#dry-run", Static).update(plain(f"{len(errors)} setting(s) to fix:\n"
                                                             + "\n".join(e.message for e in errors)))

    # ------------------------------------------------------------ actions
    def _ready(self) -> bool:
        if not self.preset or not self.config:
            self.notify("Pick a preset first.", severity="warning")
            return False
        return True

    def action_dry_run(self) -> None:
        if self._ready():
            self.check_soon(0)

    @on(Button.Pressed, "#dry-run-button")
    def dry_run_pressed(self) -> None:
        self.action_dry_run()

    @on(Button.Pressed, "#launch")
    def action_launch(self) -> None:
        """Start a detached engine (the engine validates again: a refused config writes nothing)."""
        if not self._ready():
            return
        if self.refused():
            self.notify(f"Fix More first: {self.more_errors()[0].message}", severity="error", markup=False)
            return
        if self.errors:
            self.notify(f"Fix {len(self.errors)} setting(s) first: {self.errors[0].message}", severity="error",
                        markup=False)
            return
        preset, overrides, app = self.preset, self.overrides(), self.app
        app.call_engine("launch", partial(api.start_run, preset, overrides, home=app.home, detach=True),
                        on_done=self.launched)

    def launched(self, started: api.Started) -> None:
        self.notify(f"{started.run_id}: started (engine pid {started.pid})", markup=False)
        if self.is_current:
            self.app.pop_screen()
        self.app.open_run(started.run_id)

    @on(Button.Pressed, "#save")
    def action_save_preset(self) -> None:
        if not self._ready():
            return
        preset, overrides, app = self.preset, self.overrides(), self.app

        def named(name: str | None) -> None:
            if name:
                app.call_engine("save preset", partial(api.save_preset, name, preset, overrides),
                                on_done=lambda path: app.notify(f"saved preset {path}", markup=False))

        app.push_screen(PresetNameScreen(f"Save as a new preset in {api.user_presets_dir()}, named:",
                                         f"{self.config.get('name', 'preset')}-custom"), named)
