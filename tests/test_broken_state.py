"""Broken state: a corrupted database, one from a newer imm, a run folder deleted by hand, a
half-written config.json and a damaged config row each give a clear error (exit 2 on the CLI, a
message in the app, no traceback) and leave the other runs of the home as they were."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from engine import api
from engine.config import resolve
from engine.driver import open_run
from engine.errors import BrokenStateError
from engine.runstate.plan import create_run
from engine.runstate.store import SCHEMA_VERSION, Store
from imm_tui.app import ImmApp
from imm_tui.cli import main

from app_helpers import screen_text, until
from conftest import TINY_PRESET, imm

pytestmark = pytest.mark.fault  # benchmarks/reliability.py counts this group


@pytest.fixture
def two_runs(tmp_path) -> tuple[Path, str, str]:
    """A home with two created runs; the first (`broken`) has finished its build stage."""
    home = tmp_path / "home"
    store = Store(home)
    broken, _ = create_run(store, resolve(TINY_PRESET, ["name=broken"]), str(TINY_PRESET))
    other, _ = create_run(store, resolve(TINY_PRESET, ["name=other"]), str(TINY_PRESET))
    store.set_stage(broken, 0, "build", status="running", started=1.0)
    store.finish_stage(broken, 0, "build", artifact="models/tiny-arith")
    store.db.close()
    return home, broken, other


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def runs_screen_text(home: Path, *shown: str) -> str:
    """The runs screen's text once it shows every one of `shown`."""
    from imm_tui.screens.runs import RunsScreen

    app = ImmApp(home)
    async with app.run_test(size=(140, 30)) as pilot:
        return await until(pilot, lambda: isinstance(app.screen, RunsScreen) and all(s in (t := screen_text(app)) for s in shown)
                           and t, what=f"the runs screen to show {shown}")


def test_a_corrupted_database_is_a_clear_error_and_left_as_it_is(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    garbage = b"SQLite format 3\x00" + b"\xde\xad" * 4000  # a header, then nothing SQLite can read
    (home / "imm.db").write_bytes(garbage)
    for argv in (["ls"], ["show", "x"], ["run", str(TINY_PRESET)]):
        code, _, err = cli(capsys, *argv, "--home", str(home))
        assert code == 2 and f"{home / 'imm.db'}: not a readable imm database" in err and "Traceback" not in err, err
    proc = imm("ls", home=home, timeout=60)
    assert proc.returncode == 2 and "not a readable imm database" in proc.stderr and "Traceback" not in proc.stderr
    assert (home / "imm.db").read_bytes() == garbage and sorted(p.name for p in home.iterdir()) == ["imm.db"]


@pytest.mark.anyio
async def test_the_app_says_the_database_is_corrupted(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "imm.db").write_bytes(b"not a database at all " * 200)
    await runs_screen_text(home, "error: ", "not a readable imm database")


def test_a_newer_database_is_listed_but_never_written(two_runs, capsys):
    home, broken, other = two_runs
    with sqlite3.connect(home / "imm.db") as db:
        db.execute("PRAGMA journal_mode = DELETE")  # as a newer imm might leave it
        db.execute("PRAGMA user_version = 99")
    before = (home / "imm.db").read_bytes()
    code, out, _ = cli(capsys, "ls", "--home", str(home))
    assert code == 0 and broken in out and other in out
    for argv in (["run", str(TINY_PRESET)], ["resume", other, "--detach"], ["resume", other]):
        code, _, err = cli(capsys, *argv, "--home", str(home))
        assert code == 2 and f"schema version 99, newer than this imm's {SCHEMA_VERSION}" in err and "upgrade imm" in err, err
    assert (home / "imm.db").read_bytes() == before and not (home / "imm.db-wal").exists()
    assert sorted(p.name for p in (home / "runs").iterdir()) == sorted([broken, other])


def test_a_run_folder_deleted_by_hand(two_runs, capsys):
    home, broken, other = two_runs
    shutil.rmtree(home / "runs" / broken)
    for argv in (["resume", broken], ["resume", broken, "--detach"]):
        code, _, err = cli(capsys, *argv, "--home", str(home))
        assert code == 2 and f"run {broken}: its folder {home / 'runs' / broken} is gone" in err, err
    assert not (home / "runs" / broken).exists()
    code, out, _ = cli(capsys, "ls", "--home", str(home))
    assert code == 0 and broken in out and other in out
    assert cli(capsys, "show", broken, "--home", str(home))[0] == 0
    # a run that has finished nothing yet simply gets its folder again
    shutil.rmtree(home / "runs" / other)
    ctx = open_run(Store(home), other, echo=False)
    assert ctx.paths.root.is_dir() and json.loads(ctx.paths.config.read_text())["name"] == "other"


@pytest.mark.anyio
async def test_the_app_opens_a_run_whose_folder_is_gone(two_runs):
    from imm_tui.screens.run_detail import TABS, RunDetailScreen

    home, broken, other = two_runs
    shutil.rmtree(home / "runs" / broken)
    app = ImmApp(home)
    async with app.run_test(size=(140, 30)) as pilot:
        from imm_tui.screens.runs import RunsScreen

        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.runs)
        assert {r.id for r in app.screen.runs} == {broken, other}
        app.open_run(broken)
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.detail is not None)
        for key, tab in zip("123456", TABS):
            await pilot.press(key)
            await until(pilot, lambda: app.screen.query_one("#tabs").active == tab, what=tab)
        app.resume_run(broken)
        await until(pilot, lambda: any("is gone" in str(n.message) for n in app._notifications), what="the error")
        assert isinstance(app.screen, RunDetailScreen)


def test_a_half_written_config_json_is_written_again_from_the_database(two_runs, capsys):
    home, broken, other = two_runs
    config = home / "runs" / other / "config.json"
    whole = json.loads(config.read_text())
    config.write_text(config.read_text()[:50])
    code, out, _ = cli(capsys, "ls", "--home", str(home))
    assert code == 0 and other in out
    assert api.run_detail(other, home).config == whole  # the database holds the config
    ctx = open_run(Store(home), other, echo=False)
    assert json.loads(config.read_text()) == whole
    assert "config.json was missing or damaged: written again from the database" in ctx.paths.log.read_text()


@pytest.mark.anyio
async def test_a_damaged_config_row_spoils_only_its_run(two_runs, capsys):
    home, broken, other = two_runs
    with sqlite3.connect(home / "imm.db") as db:
        db.execute("UPDATE runs SET config = '{\"name\": \"bro' WHERE id = ?", (broken,))
    code, out, _ = cli(capsys, "ls", "--home", str(home))
    assert code == 0 and broken in out and other in out
    code, _, err = cli(capsys, "show", broken, "--home", str(home))
    assert code == 2 and f"run {broken}: its config in imm.db is damaged" in err
    assert cli(capsys, "show", other, "--home", str(home))[0] == 0
    with pytest.raises(BrokenStateError):
        open_run(Store(home), broken, echo=False)
    # Both listed, the app up. (The table's rows, not the screen's text: under load the runs table
    # can stay squeezed with its ids cut, issue 16's "the runs table often opens squeezed".)
    from imm_tui.screens.runs import RunsScreen

    app = ImmApp(home)
    async with app.run_test(size=(140, 30)) as pilot:
        table = await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one("#runs"))
        await until(pilot, lambda: {key.value for key in table.rows} == {broken, other}, what="both runs listed")
