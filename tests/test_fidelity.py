"""Issue 10, fidelity to the method: global batch, samples per question, the released script's
prompt and the method's exemplars, decoding owing nothing to generation_config.json, MathQA, the
SFT interventions, vanilla_from, SFT on gold rationales, pass@k rows."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from engine.config import RunConfig, SFTConfig, derived_grad_accum, resolve, samples_per_temperature
from engine.errors import ConfigError
from engine.tasks import get_task
from engine.tasks.prompts import STOP_SEQUENCES

from conftest import SHARED_DATA, TINY_PRESET

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no benchmark data at {SHARED_DATA}")


@pytest.fixture
def data_dir(monkeypatch):
    monkeypatch.setenv("IMM_DATA_DIR", str(SHARED_DATA))


# ---------------------------------------------------------------- batch and samples


def test_global_batch_derives_the_accumulation_and_must_divide():
    s = SFTConfig(batch_size=4, grad_accum=4, global_batch_size=128)
    assert [derived_grad_accum(s, gpus) for gpus in (1, 2, 4, 8)] == [32, 16, 8, 4]
    assert derived_grad_accum(SFTConfig(batch_size=4, grad_accum=3), 8) == 3  # unset: grad_accum as given
    with pytest.raises(ConfigError, match=r"sft.global_batch_size: got 128.*4 x 3 = 12"):
        derived_grad_accum(s, 3)
    with pytest.raises(ConfigError, match=r"sft.global_batch_size: got 100.*multiple of sft.batch_size x GPUs = 8 x 1"):
        resolve(TINY_PRESET, ["sft.batch_size=8", "sft.global_batch_size=100"])
    with pytest.raises(ConfigError, match=r"sft.global_batch_size.*6 x 4 = 24"):
        resolve(TINY_PRESET, ["sft.backend=deepspeed", "sft.num_gpus=4", "sft.batch_size=6", "sft.global_batch_size=128"])


def test_samples_per_question_are_dealt_round_robin_over_the_temperatures():
    cfg = RunConfig()
    cfg.generation.temperatures = [0.2, 0.4, 0.6]
    for k, dealt in ((3, [1, 1, 1]), (6, [2, 2, 2]), (4, [2, 1, 1]), (1, [1, 0, 0])):
        cfg.generation.k = k
        assert samples_per_temperature(cfg.generation) == dealt and sum(dealt) == k
    assert samples_per_temperature(resolve(TINY_PRESET).generation) == [1, 1, 1]  # the tiny default: 3 per question


# ---------------------------------------------------------------- prompts and exemplars

HEADER = ("Below is an instruction that describes a task. Write a response that appropriately completes the request "
          "like given examples below:")


def shot_text(shots) -> str:
    return "".join(f"Question: {s.question}\nA: Let's think step by step.\n{s.rationale}\n\n" for s in shots)


@needs_data
def test_exact_gsm8k_and_math_prompts(data_dir):
    gsm8k = get_task("gsm8k")
    ex = gsm8k.load("test")[0]
    shots = gsm8k.fixed_exemplars()
    assert shots[0].rationale.endswith("They will need to plan to study 4 days to allow for all the time they need.\nThe answer is 4")
    assert gsm8k.prompt(ex, shots) == (
        f"{HEADER}\n\n{shot_text(shots)}### Instruction:\nJanet’s ducks lay 16 eggs per day. She eats three for breakfast "
        "every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' "
        "market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?"
        "\n\n### Response: Let's think step by step.")
    math = get_task("math")
    ex = math.load("test")[0]
    shots = math.fixed_exemplars()
    assert shots[2].rationale.endswith("\nThe answer is " + shots[2].answer) and "\\boxed{" in shots[2].rationale
    assert math.prompt(ex, shots) == (
        f"{HEADER}\n\n{shot_text(shots)}### Instruction:\nConvert the point $(0,3)$ in rectangular coordinates to polar "
        "coordinates.  Enter your answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$"
        "\n\n### Response: Let's think step by step.")
    # SFT and zero-shot evaluation: the script's zero-shot header, the same instruction and response lines
    assert math.prompt(ex, []).startswith("Below is an instruction that describes a task. Write a response that "
                                          "appropriately completes the request.\n\n### Instruction:\nConvert the point")
    assert STOP_SEQUENCES == ("Question:", "USER:", "ASSISTANT:", "Instruction:", "Response:")


@needs_data
@pytest.mark.parametrize("name, test_field, paper_lines", [
    ("gsm8k", "question", [7365, 1709, 670]),
    ("math", "problem", [1644, 1080, 1439]),
])
def test_ten_fixed_exemplars_from_train_none_evaluated(data_dir, name, test_field, paper_lines):
    task = get_task(name)
    shots = task.fixed_exemplars()
    assert len(shots) == 10 and len({s.question for s in shots}) == 10
    train_file = SHARED_DATA / name / "train.jsonl"
    train = train_file.read_text().splitlines()
    assert [s.meta["source"] for s in shots[:3]] == [f"{name}/train.jsonl line {n}" for n in paper_lines]
    train_field = "question" if name == "gsm8k" else "problem"
    for s in shots:  # each names its train line, and is that line's question and gold answer
        line = int(s.meta["source"].rsplit(" ", 1)[1])
        assert json.loads(train[line - 1])[train_field] == s.question
        assert task.grade(s.rationale, s)[1]
    test_questions = {e.question for e in task.load("test")}
    assert not test_questions & {s.question for s in shots}


@needs_data
def test_fewshot_beyond_the_exemplars_fails_clearly(data_dir):
    from engine.tasks.prompts import build_prompts

    task = get_task("math")
    ex = task.load("test")[:2]
    prompts = build_prompts(task, ex, 10, "fixed", 0, False, "generation.fewshot")
    assert len(prompts) == 2 and prompts[0].count("\nA: Let's think step by step.\n") == 10
    assert prompts[0].split("### Instruction:")[0] == prompts[1].split("### Instruction:")[0]  # fixed: the same shots
    with pytest.raises(ConfigError, match=r"generation.fewshot: got 11.*at most 10: task 'math' has 10 fixed exemplars"):
        build_prompts(task, ex, 11, "fixed", 0, False, "generation.fewshot")
    randomly = build_prompts(task, ex, 3, "random", 0, False, "generation.fewshot")
    assert randomly[0].split("### Instruction:")[0] != randomly[1].split("### Instruction:")[0]


@needs_data
def test_math_questions_come_from_the_full_train_split(data_dir):
    task = get_task("math")
    train = task.load("train")
    assert len(train) == 7500 and len(task.load("test")) == 500
    assert train[1655].answer == "2"  # "\boxed 2" (no braces) in the stored solution


# ---------------------------------------------------------------- decoding


@pytest.mark.slow
def test_a_checkpoints_generation_config_has_no_effect(base_models, tmp_path):
    import torch

    from engine.models.generation import HFGenerator
    from engine.tasks.arith import ArithTask

    plain = base_models / "tiny-arith-v1"
    odd = tmp_path / "odd"
    shutil.copytree(plain, odd)
    config = json.loads((odd / "generation_config.json").read_text())
    (odd / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 5.0, "top_k": 1, "top_p": 0.1,
                                                            "temperature": 0.01, "do_sample": True, "no_repeat_ngram_size": 2}))
    task = ArithTask("arith_add3", 3, "+")
    prompts = [task.prompt(e, []) for e in task.load("test")[:24]]

    def outputs(folder, temperature):
        gen = HFGenerator(folder, "cpu", torch.float32, batch_size=24)
        torch.manual_seed(0)
        try:
            return gen.generate(prompts, temperature, 2 if temperature else 1, 30, task.stop_sequences), gen.eos_ids
        finally:
            gen.close()

    for temperature in (0.0, 0.8):
        (a, eos_a), (b, eos_b) = outputs(plain, temperature), outputs(odd, temperature)
        assert a == b and eos_a == eos_b
    # the settings would have changed the output, had they been inherited
    from engine.models.loading import load_model, load_tokenizer

    tok, model = load_tokenizer(odd), load_model(odd, "cpu", torch.float32)
    enc = tok(prompts[:8], return_tensors="pt", padding=True)
    inherited = tok.batch_decode(model.generate(**enc, max_new_tokens=30)[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert [task.grade(c, e)[1] for c, e in zip(inherited, task.load("test"))] != \
        [task.grade(c[0], e)[1] for c, e in zip(outputs(plain, 0.0)[0][:8], task.load("test"))]


# ---------------------------------------------------------------- MathQA and pass@k


@needs_data
def test_mathqa_loads_every_question_with_five_options(data_dir):
    task = get_task("mathqa")
    examples = task.load("test")
    assert len(examples) == 2985 and {e.answer for e in examples} == set("ABCDE")
    raw = [json.loads(line) for line in (SHARED_DATA / "mathqa" / "test.jsonl").open()]
    listed = [i for i, r in enumerate(raw) if str(r["options"]).lstrip().startswith("[")]
    assert len(listed) == 66
    for e in examples:
        shown = e.question.split("\nAnswer Choices: ")[1]
        starts = [shown.find(f"({letter}) ") for letter in "ABCDE"]
        assert starts[0] == 0 and starts == sorted(starts), e.id
    assert examples[0].question.endswith("Answer Choices: (A) 38 (B) 27.675 (C) 30 (D) data inadequate (E) none of these")


def test_every_evaluated_k_is_a_row_and_in_the_json():
    from engine.results_table import render
    from engine.stages.evaluate import evaluate_tasks

    class Fake:  # the first of each question's 4 samples right, the others wrong
        def generate(self, prompts, temperature, n, max_new_tokens, stop=(), on_batch=None, seed=None):
            return [["The answer is 0."] * n for _ in prompts]

    task = get_task("arith_add3")
    ex = task.load("test")[:4]
    task.load = lambda split: [type(e)(e.id, e.question, "0" if i % 2 else e.answer) for i, e in enumerate(ex)]
    cfg = RunConfig().eval
    cfg.k, cfg.samples = [1, 2, 4], 4
    rows = evaluate_tasks(Fake(), {"arith_add3": (task, "id")}, cfg, 0, 0)
    assert [(r["metric"], r["value"]) for r in rows] == [("pass@1", 50.0), ("pass@2", 50.0), ("pass@4", 50.0)]
    run = {"id": "r", "name": "r", "status": "done", "method": "imm", "config": "{}", "error": None}
    shown = json.loads(render("json", run, [], [{"checkpoint": "base", "iteration": 0, **r} for r in rows]))
    assert sorted(r["metric"] for r in shown["results"]) == ["pass@1", "pass@2", "pass@4"]


# ---------------------------------------------------------------- interventions


def test_gradient_decay_scales_each_layers_learning_rate():
    from engine.train.interventions import layer_lr_scales

    names = ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight",
             "model.layers.2.input_layernorm.weight", "model.norm.weight", "lm_head.weight"]
    assert layer_lr_scales(names, 0.5) == [0.125, 0.25, 0.5, 1.0, 1.0, 1.0]
    assert layer_lr_scales(names, 1.0) == [1.0] * 6


def test_clipping_uses_the_configured_max_norm():
    import torch

    from engine.train.schedule import optimizer_step

    for max_norm, expected in ((0.5, 0.5), (0.0, 5.0)):
        w = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([w], lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        (w * torch.tensor([3.0, 4.0])).sum().backward()  # gradient norm 5
        model = torch.nn.Module()
        model.w = w
        optimizer_step(model, opt, sched, max_norm)
        assert float(w.detach().norm()) == pytest.approx(expected)


def one_step_deltas(base_models, tmp_path, name, **sft):
    """Per-tensor weight change of one SFT step on the tiny model (fp32, CPU) with these SFT settings."""
    import torch
    from safetensors.torch import load_file

    from engine.tasks.arith import ArithTask
    from engine.train.sft import train

    init = base_models / "tiny-arith-v1"
    task = ArithTask("arith_add3", 3, "+")
    pairs = [(task.prompt(e, []), e.rationale) for e in task.load("train")[:16]]  # one batch: one optimizer step
    cfg = SFTConfig(epochs=1, lr=1e-3, batch_size=16, grad_accum=1, warmup=0.0, schedule="linear", max_length=64, **sft)
    train(init, pairs, cfg, tmp_path / name, "cpu", torch.float32, seed=0, log=lambda _: None)
    before, after = load_file(init / "model.safetensors"), load_file(tmp_path / name / "model.safetensors")
    return {k: after[k] - before[k] for k in before}


@pytest.mark.slow
def test_gradient_decay_and_weight_masking_change_the_update_as_documented(base_models, tmp_path):
    import torch

    from engine.train.interventions import layer_lr_scales

    plain = one_step_deltas(base_models, tmp_path, "plain")
    decayed = one_step_deltas(base_models, tmp_path, "decay", grad_decay=0.5)
    # one step from the same weights on the same batch: Adam's update scales with the learning rate,
    # so each tensor's change is its layer's factor times the plain change
    names = sorted(plain)
    for name, scale in zip(names, layer_lr_scales(names, 0.5)):
        assert torch.allclose(decayed[name], scale * plain[name], rtol=1e-3, atol=1e-7), name
    masked = one_step_deltas(base_models, tmp_path, "mask", mask_top_p=0.25)
    for name, delta in masked.items():
        changed = (delta != 0).float().mean().item()
        assert 0 < changed <= 0.25 + 2 / delta.numel(), (name, changed)


# ---------------------------------------------------------------- vanilla_from and gold rationales


def test_vanilla_from_base_restarts_sft_from_the_base(tmp_path):
    from engine.runstate.paths import RunPaths
    from engine.stages.context import StageContext

    with pytest.raises(ConfigError, match="vanilla_from: got 'base'.*only vanilla"):
        resolve(TINY_PRESET, ["vanilla_from=base"])
    for vanilla_from, expected in (("previous", "sft"), ("base", "models")):
        cfg = resolve(TINY_PRESET, ["method=vanilla", f"vanilla_from={vanilla_from}"])
        ctx = StageContext(cfg, "r", RunPaths(tmp_path / "run"), tmp_path, 0, print)
        assert Path(ctx.prev_path(2)).name == "sft"  # the samples come from SFT_1 either way
        assert expected in Path(ctx.sft_init_path(2)).parts
        assert ctx.sft_init_path(1) == ctx.base_path


def test_gold_source_writes_the_gold_rationales_as_samples(tmp_path):
    from engine.jsonl import read_records
    from engine.runstate.paths import RunPaths
    from engine.stages.context import StageContext
    from engine.stages.generate import generate

    cfg = resolve(TINY_PRESET, ["generation.source=gold", "tasks.train_size=20"])
    ctx = StageContext(cfg, "r", RunPaths(tmp_path / "run"), tmp_path, 0, lambda _: None)
    (tmp_path / "run").mkdir()
    result = generate(ctx, 1)
    samples = read_records(ctx.paths.samples(1), "samples")
    task = get_task("arith_add3")
    assert result.info == {"questions": 20, "samples": 20, "generator": "gold"}
    assert all(task.grade(s["completion"], task.load("train")[0].__class__(s["id"], s["question"], s["gold"]))[1] for s in samples)
    with pytest.raises(ConfigError, match="generation.source"):
        resolve(TINY_PRESET, ["generation.source=gold", "teacher.path=Qwen/Qwen2.5-7B-Instruct"])


# ---------------------------------------------------------------- the filter's rules (issue 18)


def filtered(tmp_path, samples, *overrides):
    from engine.jsonl import read_records, write_records
    from engine.runstate.paths import RunPaths
    from engine.stages.context import StageContext
    from engine.stages.filter import filter as filter_stage

    cfg = resolve(TINY_PRESET, list(overrides))
    paths = RunPaths(tmp_path / "-".join(overrides).replace("=", "_"))
    paths.iteration(1).mkdir(parents=True)
    write_records(paths.samples(1), samples)
    info = filter_stage(StageContext(cfg, "r", paths, tmp_path, 0, lambda _: None), 1).info
    return info, read_records(paths.kept(1), "kept"), read_records(paths.graded(1), "graded")


def test_the_filter_keeps_stated_answers_and_duplicates_as_configured_and_counts_each_rule(tmp_path):
    sample = {"id": "3+4+5", "question": "3+4+5", "gold": "12", "temperature": 0.2}
    completions = ["3+4=7. 7+5=12. The answer is 12.",  # stated, right
                   "3+4=7. 7+5=12. The answer is 12.",  # the same again
                   "3+4=7. 7+5=12",  # right only by its last number: never stated, cut off
                   "3+4=7. 7+5=11. The answer is 11. Oh, 12",  # states a wrong answer
                   "3+4=7. 7+5=12. The answer is"]  # the anchor, no answer: right only by the fallback
    samples = [{**sample, "completion": c} for c in completions]
    info, kept, graded = filtered(tmp_path, samples, "filter.answer=stated", "filter.dedup=false")
    assert {k: info[k] for k in ("samples", "kept", "correct_stated", "correct_any", "duplicates", "answer_rule", "dedup")} == \
        {"samples": 5, "kept": 2, "correct_stated": 2, "correct_any": 4, "duplicates": 1, "answer_rule": "stated", "dedup": False}
    assert [g["kept"] for g in graded] == [True, True, False, False, False]
    assert [g["answer_stated"] for g in graded] == [True, True, False, True, False]
    info, kept, _ = filtered(tmp_path, samples, "filter.answer=stated", "filter.dedup=true")
    assert (info["kept"], info["duplicates"]) == (1, 1) and kept[0]["response"] == completions[0]
    info, kept, graded = filtered(tmp_path, samples, "filter.answer=any", "filter.dedup=false")
    assert (info["kept"], info["correct_stated"], info["correct_any"]) == (4, 2, 4)
    assert [g["kept"] for g in graded] == [True, True, True, False, True]
    with pytest.raises(ConfigError, match=r"filter.answer: got 'last'.*one of stated, any"):
        resolve(TINY_PRESET, ["filter.answer=last"])


@needs_data
def test_stated_answers_are_read_only_where_the_completion_states_them(data_dir):
    from engine.tasks.base import Example

    gsm8k, math, choice = get_task("gsm8k"), get_task("math"), get_task("mathqa")
    ex = Example("q", "q", "18")
    assert gsm8k.grade("She makes 9 * 2 = 18 dollars", ex) == ("18", True)  # evaluation's lenient reading
    assert gsm8k.grade("She makes 9 * 2 = 18 dollars", ex, stated_only=True) == (None, False)
    assert gsm8k.grade("9 * 2 = 18\nThe answer is $18.\nQuestion 7", ex, stated_only=True) == ("18", True)
    assert gsm8k.grade("9 * 2 = 18\n#### 18", ex, stated_only=True) == ("18", True)
    assert gsm8k.grade("The answer is unclear.\n9 * 2 = 18", ex, stated_only=True)[1] is False
    assert math.grade("so $x = \\boxed{\\frac{1}{2}}$.", Example("m", "m", "\\frac12"), stated_only=True)[1]
    assert choice.grade("27 is option (B) and (C) is 30", Example("c", "c", "C"))[1]  # last "(C)" counts leniently
    assert not choice.grade("27 is option (B) and (C) is 30", Example("c", "c", "C"), stated_only=True)[1]
    assert choice.grade("... The answer is (C).", Example("c", "c", "C"), stated_only=True) == ("C", True)


# ---------------------------------------------------------------- the presets against the paper (issue 18)

PRESETS = Path(__file__).resolve().parent.parent / "engine" / "presets"
PAPER_PRESETS = sorted(p for p in PRESETS.glob("*.toml") if p.stem.startswith(("qwen2.5-", "llama")))


def test_paper_presets_keep_every_correct_stated_sample_and_run_the_diagnostics():
    assert len(PAPER_PRESETS) >= 20
    for preset in PAPER_PRESETS:
        cfg = resolve(preset)
        assert (cfg.filter.answer, cfg.filter.dedup) == ("stated", False), preset.name
        assert cfg.analyze.when == "every", preset.name
        assert cfg.generation.max_new_tokens == 512, preset.name  # the released script's max_tokens, MATH too
        assert cfg.eval.max_new_tokens == (1024 if cfg.tasks.id == "math" else 512), preset.name
    assert RunConfig().analyze.when == "every" and (RunConfig().filter.answer, RunConfig().filter.dedup) == ("stated", False)
    assert resolve(TINY_PRESET, ["analyze.when=off"]).analyze.when == "off"  # still a choice


def test_table_5_presets_are_its_rows():
    rows = {name: resolve(PRESETS / f"qwen2.5-1.5b-gsm8k-{name}.toml") for name in
            ("sft1", "sft1-clip", "sft1-decay", "sft1-mask", "sft1-imm")}
    knobs = {name: (c.method, c.iterations, c.sft.max_grad_norm, c.sft.grad_decay, c.sft.mask_top_p)
             for name, c in rows.items()}
    assert knobs == {"sft1": ("vanilla", 1, 0.0, 1.0, 1.0),  # vanilla: no intervention, no clipping
                     "sft1-clip": ("vanilla", 1, 2.0, 1.0, 1.0),
                     "sft1-decay": ("vanilla", 1, 0.0, 0.9, 1.0),
                     "sft1-mask": ("vanilla", 1, 0.0, 1.0, 0.3),
                     "sft1-imm": ("imm", 1, 0.0, 1.0, 1.0)}
    base = dataclasses.asdict(rows["sft1"])
    for name, cfg in rows.items():  # nothing else differs
        diff = {k for k, v in dataclasses.asdict(cfg).items() if v != base[k]}
        assert diff <= {"name", "sft", "method"}, (name, diff)


# ---------------------------------------------------------------- the README's map of the paper (issue 18)

README = Path(__file__).resolve().parent.parent / "README.md"
PAPER_ITEMS = [f"Figure {n}" for n in (1, 2, 3, 4, *range(6, 14))] + [f"Table {n}" for n in range(2, 10)]


def paper_map() -> list[list[str]]:
    """The rows (cells) of the README's "A map of the paper" table."""
    section = README.read_text().split("### A map of the paper", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:] if not row.startswith("|---")]


def test_the_paper_map_covers_every_experiment_and_names_real_presets_and_commands(data_dir):
    import re
    import shlex

    from engine.api import dry_run
    from imm_tui.cli import build_parser

    rows = paper_map()
    assert {r[0].split(",")[0] for r in rows} == set(PAPER_ITEMS)
    presets, commands = set(), []
    for paper, _, produced, differs in rows:
        cells = re.findall(r"`([^`]+)`", produced)
        assert cells, f"{paper}: no preset or command"
        # what differs may quote other things (a formula); a quoted single word there is a preset
        for text in cells + [t for t in re.findall(r"`([^`]+)`", differs) if t.startswith("imm ") or " " not in t]:
            if text.startswith("imm "):
                commands.append(text)
            else:
                assert (PRESETS / f"{text}.toml").is_file(), f"{paper}: {text} is no preset"
                presets.add(text)
    parser = build_parser()
    for command in commands:  # every command parses; a preset it runs resolves with its --set
        args = parser.parse_args(shlex.split(command)[1:])
        if args.command == "run":
            assert "--dry-run" not in command
            assert dry_run(README.parent / args.preset, args.overrides).startswith("plan of ")
    assert len(presets) >= 20
    for name in sorted(presets):
        assert dry_run(PRESETS / f"{name}.toml").startswith(f"plan of {name}:"), name


# ---------------------------------------------------------------- the replication's statistics (issue 18)


@pytest.fixture
def replication(monkeypatch):
    monkeypatch.syspath_prepend(str(README.parent / "benchmarks"))
    import replication

    return replication


def test_replication_intervals_and_paired_differences(replication):
    paired, wilson = replication.paired, replication.wilson

    lo, hi = wilson(8, 10)  # the textbook case: 49.0% to 94.3%
    assert (round(lo, 1), round(hi, 1)) == (49.0, 94.3)
    assert wilson(0, 20)[0] == pytest.approx(0.0, abs=1e-9) and 0 < wilson(0, 20)[1] < 17
    a = {i: int(i % 3 != 0) for i in range(30)}  # 20 right
    b = {i: int(i % 2 == 0) for i in range(30)}  # 15 right
    c = paired(a, b)
    d = [a[i] - b[i] for i in range(30)]
    mean = sum(d) / 30
    sd = (sum((x - mean) ** 2 for x in d) / 29) ** 0.5
    assert c["n"] == 30 and c["diff_pts"] == pytest.approx(100 * 5 / 30)
    assert c["ci_pts"] == pytest.approx([100 * (mean - 1.959964 * sd / 30**0.5), 100 * (mean + 1.959964 * sd / 30**0.5)])
    assert (c["a_only"], c["b_only"]) == (sum(x == 1 for x in d), sum(x == -1 for x in d))
    assert paired(a, {i: 1 for i in range(10)})["n"] == 10  # only the questions both answered


def test_replication_conclusion_reads_the_last_iteration_both_methods_finished(replication):
    conclusion = replication.conclusion

    def row(label, lo, hi):
        return {"comparison": label, "ood": {"diff_pts": (lo + hi) / 2, "ci_pts": [lo, hi], "n": 600}}

    assert conclusion([]).startswith("No iteration has finished")
    holds = [row("vanilla SFT1 - Base", -9, -1), row("IMM Merge1 - vanilla SFT1", 0.5, 6)]
    assert "lowered" in conclusion(holds) and conclusion(holds).endswith("holds at this scale.")
    later = holds + [row("vanilla SFT2 - Base", -3, 2), row("IMM Merge2 - vanilla SFT2", -1, 4)]
    text = conclusion(later)
    assert text.startswith("After iteration 2") and "did not measurably change" in text and text.endswith("is not shown at this scale.")
