"""Registry, loading (data roots, paths, custom tasks), prompts, exemplars and error messages."""
from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest

from engine.errors import ConfigError, UserError
from engine.tasks import REGISTRY, TaskSpec, get_task, task_names
from engine.tasks.prompts import FEWSHOT_HEADER
from engine.tasks.sources import PROJECT_ROOT

DATA = PROJECT_ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no benchmark data at {DATA}")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def wp(tmp_path):
    """A small made-up word-problem folder with its own field names."""
    folder = tmp_path / "wp"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", [
        {"problem": "Ann has 3 pens and buys 4. How many now?", "value": 7},
        {"problem": "A box holds 6 eggs. How many in 2 boxes?", "value": "12"},
    ])
    write_jsonl(folder / "train.jsonl", [
        {"problem": f"What is {i} + 1?", "value": i + 1, "why": f"{i} + 1 = {i + 1}."} for i in range(5)
    ])
    return folder


def test_registry_lists_the_benchmarks_and_the_arith_tasks():
    assert {"gsm8k", "math", "svamp", "asdiv", "mawps", "sat_math", "mmlu_stem", "aqua", "mathqa",
            "arith_add2", "arith_add3", "arith_add4", "arith_mix3"} == set(task_names()) == set(REGISTRY)


def test_importing_the_registry_loads_no_heavy_package():
    code = "import sys, engine.tasks; print([m for m in ('torch', 'datasets', 'math_verify') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_arith_tasks_keep_prompt_and_grader_and_chat_like_the_benchmarks():
    task = get_task("arith_add3")
    ex = task.load("test")[0]
    assert task.grade(ex.rationale, ex) == (ex.answer, True)
    assert task.stop_sequences == ("\n",)
    # Chat models get the benchmarks' chat form: the answer format, exemplars as turns, the question.
    shots = task.fixed_exemplars()[:2]
    messages = task.messages(ex, shots)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "The answer is N" in messages[0]["content"] and messages[-1]["content"] == ex.question
    assert messages[2]["content"] == f"Let's think step by step. {shots[0].rationale}"


@needs_data
def test_data_root_from_environment_and_from_project_root(monkeypatch, tmp_path):
    monkeypatch.delenv("IMM_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # ../shared/data from here does not exist: found from the project root
    assert len(get_task("svamp").load("test")) == 1000
    monkeypatch.setenv("IMM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))
    with pytest.raises(UserError, match=r"task 'svamp': could not load 'tongyx361/svamp'.*offline.*svamp/test.jsonl"):
        get_task("svamp").load("test")
    with pytest.raises(UserError, match=r"task 'mawps': no data for split 'test': looked for .*mawps/test.jsonl"):
        get_task("mawps").load("test")


@needs_data
def test_random_shots_are_reproducible_and_render_as_the_few_shot_format():
    task = get_task("gsm8k")
    pool, ex = task.shot_pool(), task.load("test")[0]
    shots = task.shots_for(ex, pool, 10, seed=0)
    assert len(shots) == 10 and shots == task.shots_for(ex, pool, 10, seed=0) != task.shots_for(ex, pool, 10, 1)
    prompt = task.prompt(ex, shots)
    assert prompt.startswith(FEWSHOT_HEADER + "\n\nQuestion: ")
    assert prompt.endswith(f"### Instruction:\n{ex.question}\n\n### Response: Let's think step by step.")
    assert prompt.count("The answer is") == 10 and "<<" not in prompt and "####" not in prompt
    messages = task.messages(ex, shots)
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 10 + ["user"]
    assert messages[-1]["content"] == ex.question and messages[2]["content"].endswith(f"The answer is {shots[0].answer}")
    assert "Instruction:" in task.stop_sequences


@needs_data
def test_shots_never_include_the_evaluated_question():
    task = get_task("gsm8k")
    train = task.load("train")
    for ex in train[:50]:
        assert ex not in task.shots_for(ex, train, 10, seed=3)
    ood = get_task("svamp")
    ex = ood.load("test")[0]
    assert all(s.id.startswith("fixed-") for s in ood.shots_for(ex, ood.shot_pool(), 10, seed=0))


def test_custom_task_from_a_folder_with_a_field_mapping(wp):
    spec = {"path": str(wp), "kind": "numeric", "question": "problem", "answer": "value",
            "rationale": "why", "shots": "train"}
    task = get_task("my_wp", spec)
    test = task.load("test")
    assert [(e.question, e.answer) for e in test] == [
        ("Ann has 3 pens and buys 4. How many now?", "7"), ("A box holds 6 eggs. How many in 2 boxes?", "12")]
    assert task.grade("3 + 4 = 7. The answer is 7 pens.", test[0]) == ("7", True)
    shots = task.shots_for(test[0], task.shot_pool(), 3, seed=0)
    assert len(shots) == 3 and all(s.rationale.endswith(f"The answer is {s.answer}.") for s in shots)
    assert get_task("my_wp", TaskSpec(**spec)).load("test") == test


def test_custom_choice_task_from_one_file(tmp_path):
    path = write_jsonl(tmp_path / "mc.jsonl", [{"q": "2+2?", "opts": ["3", "4", "5"], "gold": 1}])
    task = get_task("mc", {"path": str(path), "kind": "choice", "question": "q", "answer": "gold", "choices": "opts"})
    ex = task.load("test")[0]
    assert ex.question == "2+2?\nAnswer Choices: (A) 3 (B) 4 (C) 5" and ex.answer == "B"
    assert task.grade("The answer is (B).", ex)[1] and not task.grade("The answer is (C).", ex)[1]
    with pytest.raises(UserError, match=r"path '.*mc.jsonl' is one file, which holds only the test split"):
        task.load("train")


@needs_data
def test_builtin_task_pointed_at_a_local_folder(tmp_path):
    folder = tmp_path / "gsm"
    folder.mkdir()
    (folder / "test.jsonl").write_text((DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[0] + "\n")
    task = get_task("gsm8k", {"path": str(folder)})
    assert [e.answer for e in task.load("test")] == ["18"]
    with pytest.raises(UserError, match=r"task 'gsm8k': split 'train': no such file '.*gsm/train.jsonl'"):
        task.load("train")


def test_error_messages_name_task_source_and_field(tmp_path, wp):
    base = {"path": str(wp), "kind": "numeric", "question": "problem", "answer": "value"}
    with pytest.raises(UserError, match=r"unknown task 'nope'; known tasks: aqua, .*\[tasks.nope\]"):
        get_task("nope")
    with pytest.raises(UserError, match=r"task 'x': .*wp/test.jsonl: record 1 has no field 'question' \(fields: problem, value\)"):
        get_task("x", {**base, "question": "question"}).load("test")
    with pytest.raises(UserError, match=r"task 'x': split 'test': no such file '.*missing.jsonl'"):
        get_task("x", {**base, "path": str(tmp_path / "missing.jsonl")}).load("test")
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(UserError, match=r"task 'x': split 'test': .*empty.jsonl holds no records"):
        get_task("x", {**base, "path": str(empty)}).load("test")
    (tmp_path / "bad.jsonl").write_text('{"problem": "a", "value": 1}\n{oops\n')
    with pytest.raises(UserError, match=r"task 'x': .*bad.jsonl:2: not valid JSON"):
        get_task("x", {**base, "path": str(tmp_path / "bad.jsonl")}).load("test")
    with pytest.raises(UserError, match=r"task 'svamp' has no split 'train'; splits: test"):
        get_task("svamp").load("train")


@pytest.mark.parametrize("spec, message", [
    ({"path": "a.jsonl", "kind": "words"}, r"tasks.x.kind: got 'words'; allowed: numeric, number_or_text, choice, math"),
    ({"kind": "numeric"}, r"tasks.x.path: got None; allowed: exactly one of path .* and hub"),
    ({"path": "a.jsonl", "hub": "me/x", "kind": "numeric"}, r"tasks.x.path: got 'a.jsonl'; allowed: exactly one"),
    ({"path": "a.jsonl", "kind": "numeric", "colour": "red"}, r"tasks.x.colour: got 'red'; allowed: one of kind, path"),
    ({"path": "a.jsonl", "kind": "numeric", "shots": "all"}, r"tasks.x.shots: got 'all'; allowed: fixed, train"),
    ({"path": "a.jsonl", "kind": "numeric", "choices": "o"}, r"tasks.x.choices: got 'o'; allowed: only with kind = 'choice'"),
    ({"path": 3, "kind": "numeric"}, r"tasks.x.path: got 3; allowed: a string"),
])
def test_custom_spec_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        get_task("x", spec)


def test_builtin_override_errors():
    with pytest.raises(ConfigError, match=r"tasks.gsm8k.kind: got 'math'; allowed: path, hub, hub_config"):
        get_task("gsm8k", {"path": "/data/gsm8k", "kind": "math"})
    with pytest.raises(ConfigError, match=r"tasks.arith_add3: .*arithmetic tasks are generated"):
        get_task("arith_add3", {"path": "/x"})
