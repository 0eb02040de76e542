"""The config tab of a run: its resolved config as TOML, read-only; p saves it as a new preset,
y copies it to the clipboard."""
from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import TextArea

from engine import api
from engine.errors import UserError

from ..widgets.dialogs import PresetNameScreen
from ..widgets.plain import clean


def adoption_comments(adoptions: tuple[api.Adoption, ...]) -> str:
    """TOML comments over the config: which merges are adopted trials, whose alpha and p are not
    merge.alpha / merge.drop_rate below."""
    return "".join(f"# {api.checkpoint_label(a.checkpoint)} is {a.text}: merge.alpha / merge.drop_rate below "
                   "do not apply to it\n" for a in adoptions)


class ConfigPane(Vertical):
    DEFAULT_CSS = """
    ConfigPane { height: 1fr; }
    ConfigPane > TextArea { height: 1fr; }
    """
    BINDINGS = [
        Binding("p", "save_preset", "Save as preset"),
        Binding("y", "copy", "Copy TOML"),
    ]

    def __init__(self, run_id: str, **kw):
        super().__init__(**kw)
        self.run_id = run_id
        self.config: dict | None = None
        self.adoptions: tuple[api.Adoption, ...] = ()

    def compose(self) -> ComposeResult:
        text = TextArea("# loading…", language="toml", read_only=True, show_line_numbers=False, id="config-toml")
        text.cursor_blink = False  # a read-only view: a steady cursor (and steady snapshots)
        yield text

    def show(self, detail: api.RunDetail) -> None:
        if (detail.config, detail.adoptions) != (self.config, self.adoptions):
            self.config, self.adoptions = detail.config, detail.adoptions
            self.query_one(TextArea).load_text(adoption_comments(detail.adoptions) + api.config_toml(detail.config))

    def action_copy(self) -> None:
        if self.config is not None:
            self.app.copy_to_clipboard(self.query_one(TextArea).text)
            # OSC 52 asks the terminal to set its clipboard: many do, tmux and some others drop it unasked.
            self.notify("config TOML sent to the terminal's clipboard (OSC 52 escape); "
                        "where nothing arrives (tmux without set-clipboard on), press s to save it as a preset",
                        markup=False)

    def action_save_preset(self) -> None:
        if self.config is None:
            return

        def named(name: str | None) -> None:
            if name:
                self._save(name, self.config)

        default = f"{self.config.get('name', 'run')}-copy"
        self.app.push_screen(PresetNameScreen(f"Save this config as a preset in {api.user_presets_dir()}, named:",
                                              default), named)

    @work(thread=True, group="save-preset", exit_on_error=False)
    def _save(self, name: str, config: dict) -> None:
        try:
            path = api.save_preset(name, config, source=f"run {self.run_id}")
        except UserError as exc:
            self.app.call_from_thread(self.notify, clean(exc), title="save preset", severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, clean(f"saved preset {name}: {path}"), title="save preset", markup=False)
