"""`imm grade` through a real subprocess."""
from __future__ import annotations

import json
import subprocess
import sys

from engine.tasks.sources import PROJECT_ROOT


def imm(*args, cwd=PROJECT_ROOT):
    return subprocess.run([sys.executable, "-m", "imm_tui", *args], cwd=cwd, capture_output=True, text=True)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_grade_gsm8k_and_math_samples(tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [
        {"question": "q", "answer": "...\n#### 1,234", "completion": "She pays $1,234.00. The answer is $1,234."},
        {"question": "q", "answer": "...\n#### 18", "completion": "The answer is 17.\n\n### Instruction:\n18"},
    ])
    out = imm("grade", "gsm8k", str(samples))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["extracted"], r["correct"]) for r in rows] == [("1234", True), ("17", False)]
    assert rows[0]["completion"].startswith("She pays") and "gsm8k: 1/2 correct (50.0%)" in out.stderr

    math = write_jsonl(tmp_path / "m.jsonl", [{"problem": "p", "answer": "\\frac12", "completion": "So $\\boxed{0.5}$."}])
    dest = tmp_path / "graded.jsonl"
    assert imm("grade", "math", str(math), "--out", str(dest)).returncode == 0
    assert json.loads(dest.read_text()) == {"problem": "p", "answer": "\\frac12", "completion": "So $\\boxed{0.5}$.",
                                          "extracted": "0.5", "correct": True}


def test_grade_a_custom_task(tmp_path):
    samples = write_jsonl(tmp_path / "c.jsonl", [{"q": "2+2?", "gold": "C", "completion": "The answer is (C)."}])
    spec = json.dumps({"path": str(samples), "kind": "choice", "question": "q", "answer": "gold"})
    out = imm("grade", "mine", str(samples), "--spec", spec)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["correct"] is True


def test_grade_errors_exit_2_with_a_message(tmp_path):
    no_completion = write_jsonl(tmp_path / "n.jsonl", [{"question": "q", "answer": "#### 1"}])
    out = imm("grade", "gsm8k", str(no_completion))
    assert out.returncode == 2 and "record 1 has no field 'completion'" in out.stderr and out.stdout == ""
    no_gold = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "completion": "The answer is 1."}])
    out = imm("grade", "gsm8k", str(no_gold))
    assert out.returncode == 2 and "task 'gsm8k': " in out.stderr and "has no field 'answer'" in out.stderr
    out = imm("grade", "gsm8k", str(tmp_path / "absent.jsonl"))
    assert out.returncode == 2 and "no such file" in out.stderr
    out = imm("grade", "mine", str(no_gold), "--spec", "{bad")
    assert out.returncode == 2 and "--spec: not valid JSON" in out.stderr
