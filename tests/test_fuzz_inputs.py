"""Property-based tests (hypothesis): the config loader (preset bytes, TOML text, dicts), the
`--set` parser and the answer extractors and graders never crash: they accept, or reject with the
project's own errors (UserError, with ConfigError naming a field). Example counts stay modest:
the whole file runs in seconds on two cores."""
from __future__ import annotations

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import RunConfig, apply_override, resolve, to_toml
from engine.errors import ConfigError, UserError
from engine.tasks import get_task
from engine.tasks.answers import ANSWER_KINDS
from engine.tasks.base import Example

from conftest import TINY_PRESET

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def leaf_paths(node, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        out += leaf_paths(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]
    return out


LEAVES = leaf_paths(RunConfig())
SECTIONS = [f.name for f in dataclasses.fields(RunConfig)]
# What a preset or a form can hold: huge and negative integers, NaN and infinities, text with
# control characters, paths, lists and tables of those.
SCALARS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80), st.floats(), st.booleans(),
    st.text(max_size=12), st.sampled_from(["arith_add4", "builtin:tiny-arith", "-rf", "../x", "~nobody/m", "a\x00b", "imm"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=6)


def set_path(data: dict, path: str, value) -> None:
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
    node[last] = value


def accepts_or_refuses(preset, overrides=()) -> None:
    """resolve() gives a RunConfig, or the project's error; a ConfigError names a field."""
    try:
        cfg = resolve(preset, list(overrides))
    except ConfigError as exc:
        assert exc.path and str(exc).startswith(exc.path)
        return
    except UserError:
        return
    assert isinstance(cfg, RunConfig)
    for value in (cfg.sft.lr, cfg.merge.alpha, cfg.eval.temperature, *cfg.generation.temperatures):
        assert math.isfinite(value)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(LEAVES), VALUES), max_size=4))
def test_config_dicts_near_the_default(changes):
    """The default config with a few fields set to anything."""
    data = RunConfig().to_dict()
    for path, value in changes:
        set_path(data, path, value)
    accepts_or_refuses(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(SECTIONS) | st.text(max_size=8), VALUES, max_size=6))
def test_arbitrary_config_dicts(data):
    accepts_or_refuses(data)


@FUZZ
@given(st.binary(max_size=200))
def test_preset_files_of_any_bytes(tmp_path, raw):
    preset = tmp_path / "fuzz.toml"
    preset.write_bytes(raw)
    accepts_or_refuses(preset)


TOML_LINE = st.tuples(st.sampled_from(LEAVES + ["extends", "name", "tasks.x.path"]) | st.text(max_size=8),
                      st.sampled_from(["1", "-1", "99999999999999999999", "nan", "-inf", "1e999", "true", '"x"', "[1, 2]",
                                       '["arith_add4"]', "{a = 1}", "1979-05-27", '"fuzz.toml"', "'a\\b'", ""]))


@FUZZ
@given(st.lists(TOML_LINE, max_size=5))
def test_preset_toml_text(tmp_path, lines):
    """Key = value lines (dotted keys are TOML tables), valid TOML or not, a preset extending itself included."""
    preset = tmp_path / "fuzz.toml"
    preset.write_text("".join(f"{k} = {v}\n" for k, v in lines))
    accepts_or_refuses(preset)


@FUZZ
@given(st.text(max_size=40) | st.tuples(st.sampled_from(LEAVES), st.text(max_size=20)).map("=".join))
def test_set_overrides(assignment):
    data: dict = {}
    try:
        apply_override(data, assignment)
    except ConfigError as exc:
        assert exc.path
    accepts_or_refuses(TINY_PRESET, [assignment])


def test_a_resolved_config_written_as_toml_reads_back_the_same(tmp_path):
    """The way back (save as preset) of what the loader accepts."""
    cfg = resolve(TINY_PRESET, ["merge.alpha=0.3", "model.trust_remote_code=true"])
    path = tmp_path / "back.toml"
    path.write_text(to_toml(cfg.to_dict()))
    assert resolve(path) == cfg


# ------------------------------------------------------------------ answers and graders

COMPLETION = st.text(max_size=120) | st.lists(st.sampled_from([
    "The answer is", "####", "\\boxed{", "\\boxed ", "\\fbox{", "}", "{", "$", "(B)", "1,234", "-3/0", "3/4", ".5", "\n",
    "1e999", "x", " ", "\x1b[31m", "[bold]", "9" * 30, "nan", "\\frac{1}{", "\\sqrt", "^", "\\infty",
]), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(ANSWER_KINDS)), COMPLETION, COMPLETION)
def test_answer_extractors_never_crash(kind, completion, gold):
    answers = ANSWER_KINDS[kind]()
    extracted = answers.extract(completion)
    assert extracted is None or isinstance(extracted, str)
    if extracted is not None and kind != "math":  # math-verify: below, fewer examples
        assert answers.equal(extracted, gold) in (True, False)


@settings(max_examples=40, deadline=None)
@given(COMPLETION, COMPLETION)
def test_math_equivalence_never_crashes(extracted, gold):
    assert ANSWER_KINDS["math"]().equal(extracted, gold) in (True, False)


@FUZZ
@given(st.sampled_from(["arith_add3", "gsm8k", "math", "aqua", "asdiv"]), COMPLETION,
       st.sampled_from(["5", "-3", "1,000", "\\frac{1}{2}", "B", "Mrs. Hilt", "3:30 p.m.", ""]))
def test_task_graders_never_crash(task_name, completion, gold):
    task = get_task(task_name)
    extracted, correct = task.grade(completion, Example("q", "question?", gold))
    assert correct in (True, False) and (extracted is None or isinstance(extracted, str))
