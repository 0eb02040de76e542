"""Presets (extends, task tables, teacher), the dry run, and what each method trains on."""
from __future__ import annotations

import json

import pytest

from imm_tui.cli import main
from engine.config import resolve
from engine.errors import ConfigError
from engine.jsonl import write_records
from engine.runstate.plan import create_run
from engine.runstate.store import Store
from engine.stages.sft import training_pairs

from conftest import FAST, PROJECT, SHARED_DATA, TINY_PRESET, imm

PRESETS = PROJECT / "presets"


def test_baseline_presets_extend_the_paper_setup():
    cfg = resolve(PRESETS / "qwen2.5-1.5b-gsm8k-mixture.toml")
    assert (cfg.name, cfg.method, cfg.model.path) == ("qwen2.5-1.5b-gsm8k-mixture", "mixture", "Qwen/Qwen2.5-1.5B-Instruct")
    s = cfg.sft
    assert (cfg.iterations, s.epochs, s.lr, s.warmup, s.batch_size, s.global_batch_size) == (3, 3, 2e-5, 0.03, 4, 128)
    assert (cfg.generation.k, cfg.generation.temperatures, cfg.merge.alpha) == (3, [0.2, 0.4, 0.6], 0.5)
    assert (cfg.generation.fewshot, cfg.generation.exemplars, cfg.merge.drop_rate) == (10, "fixed", 0.5)
    assert cfg.tasks.ood == ["svamp", "asdiv", "mawps", "sat_math", "mmlu_stem", "mathqa"]
    math = resolve(PRESETS / "qwen2.5-1.5b-math.toml")
    assert (math.tasks.id, math.generation.k, math.model.path) == ("math", 6, "Qwen/Qwen2.5-1.5B-Instruct")
    for name in ("llama2-7b-gsm8k", "llama3-8b-gsm8k", "qwen2.5-0.5b-math"):
        assert resolve(PRESETS / f"{name}.toml").sft.global_batch_size == 128
    distill = resolve(PRESETS / "qwen2.5-1.5b-gsm8k-distill.toml")
    assert (distill.teacher.path, distill.method, distill.iterations) == ("Qwen/Qwen2.5-7B-Instruct", "imm", 1)
    assert resolve(PRESETS / "qwen2.5-1.5b-gsm8k-gold.toml").generation.source == "gold"
    passk = resolve(PRESETS / "qwen2.5-1.5b-gsm8k-passk.toml").eval
    assert (passk.k, passk.samples, passk.temperature) == ([1, 4, 8, 16], 16, 0.6)
    assert resolve(PRESETS / "qwen2.5-1.5b-gsm8k-iimm.toml").merge.mode == "importance"


def test_extends_cycle_is_an_error(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="extends"):
        resolve(tmp_path / "a.toml")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"needs the shared data sets ({SHARED_DATA})")
def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    proc = imm("run", str(PRESETS / "qwen2.5-1.5b-gsm8k.toml"), "--dry-run", home=tmp_path / "home", check=True)
    out = proc.stdout
    assert "gsm8k (in-domain): test 1319, evaluated 1319; train 7473, used per iteration 7473" in out
    assert ("3 samples per question in total, round-robin over the temperatures (1 at 0.2, 1 at 0.4, 1 at 0.6) "
            "-> 22,419 samples per iteration") in out
    assert "prompt: 10 fixed exemplars (the same for every question)" in out
    assert 'filter: correct samples whose stated answer is right ("The answer is ...", ####, \\boxed{}); identical ones too' in out
    assert "per-device 4 x grad-accum 32 x 1 GPU(s) (backend hf: one device) = global batch 128; optimizer steps per epoch at most 176" in out
    for ood in ("svamp", "asdiv", "mawps", "sat_math", "mmlu_stem", "mathqa"):
        assert f"{ood} (out-of-domain): test" in out
    assert "mathqa (out-of-domain): test 2985" in out and "aqua" not in out.split("resolved config")[0]
    assert "stages (19): 0:eval, 1:generate, 1:filter, 1:sft, 1:merge, 1:eval, 1:analyze," in out
    assert not (tmp_path / "home").exists()  # nothing written, no model loaded (the hub is unreachable here)


def test_custom_task_table_in_a_preset(tmp_path, capsys):
    data = tmp_path / "wp.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "value": 2 * i}) + "\n" for i in range(5)))
    preset = tmp_path / "mine.toml"
    preset.write_text(f'extends = "{TINY_PRESET}"\n[tasks]\nood = ["wp"]\n[tasks.wp]\npath = "{data}"\nkind = "numeric"\n'
                      'question = "problem"\nanswer = "value"\n')
    cfg = resolve(preset)
    assert cfg.tasks.ood == ["wp"] and cfg.tasks.specs["wp"]["path"] == str(data)
    out = imm("run", str(preset), "--dry-run", check=True).stdout
    assert "wp (out-of-domain): test 5, evaluated 5" in out
    preset.write_text(preset.read_text().replace('kind = "numeric"', 'kind = "poetry"'))
    assert main(["run", str(preset), "--home", str(tmp_path / "h")]) == 2
    assert "tasks.wp.kind: got 'poetry'" in capsys.readouterr().err and not (tmp_path / "h").exists()


def test_missing_teacher_is_rejected(tmp_path, capsys):
    assert main(["run", str(TINY_PRESET), "--set", "teacher.path=./no/teacher", "--home", str(tmp_path / "h")]) == 2
    assert capsys.readouterr().err.startswith("error: teacher.path: got './no/teacher'")


@pytest.mark.parametrize("method, expected", [
    ("vanilla", ["b1", "b2"]),
    ("imm", ["b1", "b2"]),
    ("accumulate", ["a1", "a2", "a3", "b1", "b2"]),
])
def test_what_each_method_trains_on(tmp_path, method, expected):
    cfg, paths = run_with_kept(tmp_path, method)
    assert sorted(r for _, r in training_pairs(cfg, paths, 2, seed=1)) == expected


def test_mixture_mixes_a_share_of_earlier_kept_samples(tmp_path):
    cfg, paths = run_with_kept(tmp_path, "mixture", ["mixture.share=1.0"])
    pairs = [r for _, r in training_pairs(cfg, paths, 2, seed=1)]
    assert pairs[:2] == ["b1", "b2"] and len(pairs) == 4 and set(pairs[2:]) <= {"a1", "a2", "a3"}
    assert pairs == [r for _, r in training_pairs(cfg, paths, 2, seed=1)]  # reproducible for a seed


def run_with_kept(tmp_path, method: str, extra=()):
    cfg = resolve(TINY_PRESET, [f"method={method}", *extra])
    run_id, paths = create_run(Store(tmp_path / "home"), cfg, "test")
    for t, names in ((1, ["a1", "a2", "a3"]), (2, ["b1", "b2"])):
        paths.iteration(t).mkdir()
        write_records(paths.kept(t), [{"prompt": f"Q{n}", "response": n} for n in names])
    return cfg, paths


@pytest.mark.slow
def test_distillation_teacher_writes_the_samples(home, base_models):
    teacher = base_models / "tiny-arith-v1"
    proc = imm("run", str(TINY_PRESET), *sum((["--set", o] for o in FAST + ["method=vanilla", f"teacher.path={teacher}"]), []),
               home=home, check=True)
    run_id = proc.stdout.split()[1]
    shown = json.loads(imm("show", run_id, "--format", "json", home=home, check=True).stdout)
    generate = next(s for s in shown["stages"] if s["stage"] == "generate")
    assert generate["info"]["generator"] == str(teacher)
    assert [s["stage"] for s in shown["stages"] if s["iteration"] == 1] == ["generate", "filter", "sft", "eval"]  # FAST turns the diagnostics off
    assert {r["checkpoint"] for r in shown["results"]} == {"base", "sft1"}
