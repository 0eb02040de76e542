"""Bad input, refused cleanly: each malformed preset or command line below exits 2 with a message
naming the field and the value, and adds no row to imm.db and no file to the home (which holds
one run already). Most cases run the CLI in-process (fast); a few go through the real
`imm` / `python -m engine` subprocesses."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import INT_MAX, RunConfig, resolve
from engine.runstate.plan import create_run
from engine.runstate.store import Store
from imm_tui.cli import main

from conftest import PROJECT, TINY_PRESET, imm, listing, nothing_written

pytestmark = pytest.mark.bad_input  # benchmarks/reliability.py counts this group

TABLES = ("runs", "stages", "metrics", "sweeps", "layer_stats", "verdicts", "progress")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home holding one created (not started) run: the rows and folder a bad command must not touch."""
    h = tmp_path_factory.mktemp("bad-input") / "home"
    create_run(Store(h), resolve(TINY_PRESET), str(TINY_PRESET))
    return h


def home_state(home: Path) -> tuple[dict, list[str]]:
    """Row counts of every table and every path under the home (SQLite's -wal/-shm aside)."""
    with sqlite3.connect(f"{(home / 'imm.db').as_uri()}?mode=ro", uri=True) as db:
        rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.name.startswith("imm.db-"))
    return rows, files


def run_id(home: Path) -> str:
    with sqlite3.connect(home / "imm.db") as db:
        return db.execute("SELECT id FROM runs").fetchone()[0]


# ------------------------------------------------------------------ --set on the tiny preset

# (override, the field the message names, a piece of what it says)
OVERRIDES = [
    ("iterations=99999999999999999999", "iterations", "99999999999999999999; allowed: <= 1000"),
    ("iterations=-1", "iterations", "-1; allowed: >= 1"),
    ("iterations=two", "iterations", "'two'; allowed: an integer"),
    ("seed=4294967296", "seed", "<= 4294967295"),
    ("seed=-3", "seed", "-3; allowed: >= 0"),
    ("merge.seed=1e3", "merge.seed", "1000.0; allowed: an integer"),
    ("sft.lr=nan", "sft.lr", "nan; allowed: a finite number"),
    ("sft.lr=inf", "sft.lr", "inf; allowed: a finite number"),
    ("merge.alpha=-inf", "merge.alpha", "-inf; allowed: a finite number"),
    ("generation.temperatures=[0.2,nan]", "generation.temperatures[1]", "nan; allowed: a finite number"),
    ("eval.temperature=1e999", "eval.temperature", "inf; allowed: a finite number"),
    ("sft.lr=" + "9" * 400, "sft.lr", "allowed: a finite number"),
    ("tasks.train_size=-5", "tasks.train_size", "-5; allowed: >= 0"),
    ("generation.batch_size=0", "generation.batch_size", "0; allowed: >= 1"),
    ("sft.batch_size=-4", "sft.batch_size", "-4; allowed: >= 1"),
    ("generation.max_new_tokens=10000000000", "generation.max_new_tokens", "10000000000; allowed: <= 1000000"),
    ("eval.samples=100000", "eval.samples", "<= 1024"),
    ("eval.k=[1,99999]", "eval.k[1]", "99999"),
    ("sft.epochs=[1]", "sft.epochs", "[1]; allowed: an integer"),
    ("model.dtype=float8", "model.dtype", "'float8'; allowed: one of auto, float32"),
    ("device=tpu", "device", "'tpu'; allowed: one of auto, cpu, cuda"),
    ("bogus.key=1", "bogus", "known keys"),
    ("sft.lrr=0.1", "sft.lrr", "0.1; allowed: one of the known keys"),
    ("merge=0.5", "merge", "0.5; allowed: a table of settings"),
    ("iterations.x=1", "iterations.x", "'1'; allowed: a path through tables"),
    ("=5", "--set", "'=5'; allowed: KEY.PATH=VALUE"),
    ("noequals", "--set", "'noequals'; allowed: KEY.PATH=VALUE"),
    ("tasks.id=arith_add3;rm -rf ~", "tasks.id", "'arith_add3;rm -rf ~'; allowed: one of"),
    ('tasks.ood=["arith_add4","x;y"]', "tasks.ood[1]", "'x;y'; allowed: one of"),
    ("model.path=-rf", "model.path", "'-rf'; allowed: an existing local model folder"),
    ("model.path=--help", "model.path", "'--help'; allowed: an existing local model folder"),
    ("teacher.path=;ls", "teacher.path", "';ls'; allowed: an existing local model folder"),
    ("name=../../escape", "name", "'../../escape'; allowed: 1-64 ASCII letters"),
    ("name=a b", "name", "'a b'; allowed: 1-64 ASCII letters"),
    ("name=-x", "name", "'-x'; allowed: 1-64 ASCII letters"),
    ("tasks.specs.x;y.kind=numeric", "tasks.x;y", "'x;y'; allowed: 1-64 ASCII letters"),
    ("model.trust_remote_code=yes", "model.trust_remote_code", "'yes'; allowed: true or false"),
    ("mixture.share=1e308", "mixture.share", "1e+308; allowed: a number in [0, 10]"),
    ("sft.global_batch_size=7", "sft.global_batch_size", "7; allowed: a multiple of sft.batch_size"),
]


@pytest.mark.parametrize("override, field, says", OVERRIDES, ids=[o[0][:40] for o in OVERRIDES])
def test_bad_override_is_refused_and_writes_nothing(home, capsys, override, field, says):
    before = home_state(home)
    assert main(["run", str(TINY_PRESET), "--set", override, "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}: got ") and says in err, err
    assert err.count("\n") == 1  # one line, no traceback
    assert home_state(home) == before


# ------------------------------------------------------------------ preset files and task data


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def custom_task(folder: Path, data: str | bytes | None, extra: str = "", kind: str = "numeric",
                in_domain: bool = False) -> Path:
    """A preset with a [tasks.mine] custom task over `data` (a JSONL file; None: no file)."""
    if data is not None:
        write(folder, "mine.jsonl", data)
    where = 'id = "mine"' if in_domain else 'ood = ["mine"]'
    return write(folder, "custom.toml", f'extends = "{TINY_PRESET}"\n[tasks]\n{where}\n'
                 f'[tasks.mine]\npath = "{folder / "mine.jsonl"}"\nkind = "{kind}"\n{extra}')


GOOD_LINE = json.dumps({"question": "1 + 1?", "answer": "2"}) + "\n"
PRESETS = {
    # name: (make(folder) -> preset path, field, a piece of the message)
    "not UTF-8": (lambda d: write(d, "latin.toml", b'name = "caf\xe9"\n'), "preset", "UTF-8 text (byte 0xe9 on line 1"),
    "UTF-16": (lambda d: write(d, "u16.toml", "iterations = 1\n".encode("utf-16")), "preset", "UTF-8 text (byte 0xff"),
    "extends itself": (lambda d: write(d, "self.toml", 'extends = "self.toml"\n'), "extends", "'self.toml'; allowed: a preset "
                       "that does not extend this one again"),
    "cycle of two": (lambda d: (write(d, "b.toml", 'extends = "a.toml"\n'), write(d, "a.toml", 'extends = "b.toml"\n'))[1],
                     "extends", "'a.toml'; allowed: a preset that does not extend this one again"),
    "extends a missing file": (lambda d: write(d, "orphan.toml", 'extends = "gone.toml"\n'), "extends", "gone.toml"),
    "extends a number": (lambda d: write(d, "num.toml", "extends = 5\n"), "extends", "5; allowed: the path of another preset"),
    "invalid TOML": (lambda d: write(d, "broken.toml", "iterations = = 2\n"), "preset", "valid TOML"),
    "missing preset": (lambda d: d / "none.toml", "preset", "none.toml'; allowed: a preset file, or the name of one: "),
    "a folder as preset": (lambda d: d, "preset", "allowed: a preset file, or the name of one: "),
    "unknown preset name": (lambda d: "tiny-arith-nosuch", "preset", "'tiny-arith-nosuch'; allowed: a preset file, or the "
                            "name of one: "),
    "file name with a space": (lambda d: write(d, "my run.toml", f'extends = "{TINY_PRESET}"\n'), "name", "'my run'"),
    "a date as iterations": (lambda d: write(d, "date.toml", "iterations = 1979-05-27\n"), "iterations", "datetime.date(1979, 5, 27)"),
    "a table as method": (lambda d: write(d, "tbl.toml", "[method]\nx = 1\n"), "method", "{'x': 1}; allowed: a string"),
    "task field not a string": (lambda d: custom_task(d, GOOD_LINE, "question = 5\n"), "tasks.mine.question", "5; allowed: a string"),
    "task kind unknown": (lambda d: custom_task(d, GOOD_LINE, kind="poetry"), "tasks.mine.kind", "'poetry'; allowed: numeric"),
    "task data missing": (lambda d: custom_task(d, None), "tasks.mine.path", "no such file"),
    "task data malformed JSONL": (lambda d: custom_task(d, GOOD_LINE + '{"question": "x", "answer": \n'), "tasks.mine.path",
                                  "mine.jsonl:2: not valid JSON"),
    "task data empty": (lambda d: custom_task(d, "\n\n"), "tasks.mine.path", "holds no records"),
    "task data not UTF-8": (lambda d: custom_task(d, GOOD_LINE.encode() + b'{"question": "\xff"}\n'), "tasks.mine.path",
                            "mine.jsonl:2: not UTF-8 text (byte 0xff)"),
    "task record not an object": (lambda d: custom_task(d, "[1, 2]\n"), "tasks.mine.path", "expected a JSON object"),
    "task record without its field": (lambda d: custom_task(d, '{"question": "x"}\n'), "tasks.mine.path", "has no field 'answer'"),
    "choice index out of range": (lambda d: custom_task(d, '{"question": "x", "answer": 99}\n', kind="choice"),
                                  "tasks.mine.path", "is 99; allowed: a letter or a 0-based index below 10"),
    "in-domain task without train data": (lambda d: custom_task(d, GOOD_LINE, in_domain=True), "tasks.mine.path",
                                          "holds only the test split"),
    "arithmetic task given data": (lambda d: write(d, "arith.toml", f'extends = "{TINY_PRESET}"\n[tasks.arith_add4]\n'
                                                  f'path = "{d}"\n'), "tasks.arith_add4", "arithmetic tasks are generated"),
    "task name with a semicolon": (lambda d: write(d, "semi.toml", f'extends = "{TINY_PRESET}"\n[tasks."x;y"]\n'
                                                  f'path = "{d}"\nkind = "numeric"\n'), "tasks.x;y", "'x;y'"),
    "specs not a table": (lambda d: write(d, "specs.toml", f'extends = "{TINY_PRESET}"\n[tasks]\nspecs = 3\n'), "tasks.specs",
                          "3; allowed: a table"),
    "a spec not a table": (lambda d: write(d, "spec.toml", f'extends = "{TINY_PRESET}"\n[tasks.specs]\nmine = 3\n'),
                           "tasks.mine", "3; allowed: a table of the task's fields"),
}


@pytest.mark.parametrize("case", sorted(PRESETS))
def test_bad_preset_is_refused_and_writes_nothing(home, tmp_path, capsys, case):
    make, field, says = PRESETS[case]
    folder = tmp_path / "presets"
    folder.mkdir()
    preset = make(folder)
    before = home_state(home)
    assert main(["run", str(preset), "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}: got ") and says in err, err
    assert home_state(home) == before


def test_every_integer_field_has_an_upper_bound_stated_in_its_error(capsys):
    """Each int field (found from the dataclasses) set far too high: refused, naming its bound."""
    def int_fields(node, prefix=""):
        for name, value in vars(node).items():
            if hasattr(value, "__dataclass_fields__"):
                yield from int_fields(value, f"{prefix}{name}.")
            elif type(value) is int or (isinstance(value, list) and value and type(value[0]) is int):
                yield prefix + name, isinstance(value, list)

    fields = dict(int_fields(RunConfig()))
    # threads and the workers: "auto" by default (tests/test_cpu_threads.py, tests/test_workers.py)
    assert set(fields) | {"threads", "generation.workers", "eval.workers"} == set(INT_MAX)
    for field, is_list in fields.items():
        huge = 10**20
        code = main(["run", str(TINY_PRESET), "--dry-run", "--set", f"{field}={[huge] if is_list else huge}"])
        err = capsys.readouterr().err
        assert code == 2 and f"got {huge}; allowed: <= {INT_MAX[field]}" in err, (field, err)


# ------------------------------------------------------------------ sweep values

SWEEPS = [
    (["--alpha", "1.5"], "--alpha", "1.5; allowed: a number in [0, 1]"),
    (["--alpha", "nan"], "--alpha", "nan; allowed: a number in [0, 1]"),
    (["--drop", "1"], "--drop", "1.0; allowed: a number in [0, 1)"),
    (["--seed", "99999999999999999999"], "--seed", "99999999999999999999; allowed: an integer in [0, 4294967295]"),
    (["--subset", "-1"], "--subset", "-1; allowed: 0 (all)"),
]


@pytest.mark.parametrize("args, field, says", SWEEPS, ids=[" ".join(a) for a, _, _ in SWEEPS])
def test_bad_sweep_values_are_refused_and_write_nothing(home, capsys, args, field, says):
    before = home_state(home)
    assert main(["sweep", run_id(home), "--iter", "1", *args, "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}: got ") and says in err, err
    assert home_state(home) == before


@pytest.mark.parametrize("args", [["--alpha", "high"], ["--iter", "one"], ["--seed", "1.5"]])
def test_sweep_values_of_the_wrong_type_are_argparse_errors(home, capsys, args):
    argv = ["sweep", run_id(home), *(["--iter", "1"] if "--iter" not in args else []), *args, "--home", str(home)]
    before = home_state(home)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and args[0] in capsys.readouterr().err
    assert home_state(home) == before


# ------------------------------------------------------------------ through the real processes


def test_a_huge_iteration_count_and_a_latin1_preset_are_refused_by_the_real_cli(tmp_path):
    """`--set iterations=99999999999999999999` was once accepted and killed while planning (exit
    137); a preset in Latin-1 once ended in a UnicodeDecodeError traceback (exit 1)."""
    fresh = tmp_path / "home"
    huge = imm("run", str(TINY_PRESET), "--set", "iterations=99999999999999999999", home=fresh, timeout=60)
    assert huge.returncode == 2 and huge.stderr == ("error: iterations: got 99999999999999999999; "
                                                    "allowed: <= 1000 (the most imm allows)\n")
    latin = write(tmp_path, "latin.toml", b'name = "caf\xe9"\n')
    before = listing(tmp_path)
    bad = imm("run", str(latin), home=fresh, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: preset: got ") and "UTF-8 text (byte 0xe9 on line 1 is not)" in bad.stderr
    assert nothing_written(tmp_path, fresh, before)


def engine_main(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=PROJECT,
                          timeout=60, **kw)


def test_python_m_engine_refuses_bad_arguments_and_homes(home, tmp_path):
    rid = run_id(home)
    before = home_state(home)
    job = engine_main("explode", rid, "--home", str(home))
    assert job.returncode == 2 and "invalid choice: 'explode'" in job.stderr
    it = engine_main("adopt", rid, "--iter", "one", "--trial", "1", "--home", str(home))
    assert it.returncode == 2 and "--iter: invalid int value: 'one'" in it.stderr
    assert home_state(home) == before

    a_file = write(tmp_path, "not-a-folder", "x")
    as_file = engine_main("run", rid, "--home", str(a_file))
    assert as_file.returncode == 2 and "which is not a folder" in as_file.stderr and "Traceback" not in as_file.stderr
    assert a_file.read_text() == "x"
