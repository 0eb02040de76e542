"""Mid-stage resume, piece by piece on the real tiny model: partial files of finished chunks,
chunk-seeded generation that an interruption does not change, and SFT training checkpoints that
resume to bit-identical weights."""
from __future__ import annotations

import json

import pytest

from engine.errors import StopRequested
from engine.stages.resumable import PartialFile, chunks_of, model_stamp, run_chunks
from engine.tasks import get_task
from imm_tui.cli import main

from conftest import TINY_PRESET


def test_partial_file_keeps_finished_chunks_and_cuts_a_torn_last_line(tmp_path):
    final, logs = tmp_path / "samples.jsonl", []
    first = PartialFile(final, "model-a", logs.append)
    first.add("k1", [["a", "b"]])
    first.add("k2", [["c", "d"]])
    with first.path.open("a") as f:  # killed while writing the third chunk
        f.write('{"key": "k3", "completions": [["e"')
    again = PartialFile(final, "model-a", logs.append)
    assert again.chunks == {"k1": [["a", "b"]], "k2": [["c", "d"]]}
    assert "2 finished chunk(s) kept" in logs[-1]
    again.add("k3", [["e", "f"]])  # appended after the cut, not glued to the torn line
    assert PartialFile(final, "model-a", logs.append).chunks["k3"] == [["e", "f"]]
    assert [json.loads(line) for line in again.path.read_text().splitlines()][0] == {"model": "model-a"}
    again.remove()
    assert not again.path.exists() and not final.exists()


def test_partial_file_of_another_model_is_dropped(tmp_path):
    final, logs = tmp_path / "eval_sft1.jsonl", []
    PartialFile(final, "model-a", logs.append).add("k1", [["a"]])
    other = PartialFile(final, "model-b", logs.append)
    assert other.chunks == {} and "of another model" in logs[-1]
    assert other.path.read_text() == json.dumps({"model": "model-b"}) + "\n"


def test_model_stamp_changes_when_the_checkpoint_is_made_again(tmp_path):
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    before = model_stamp(str(folder))
    (folder / "model.safetensors").write_bytes(b"y" * 11)
    assert model_stamp(str(folder)) != before
    assert model_stamp("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"


def generate_chunks(gen, prompts, temperature, n, max_new, stop, *, seed, chunk_size, partial=None, safe_point=None):
    """The completions of each prompt, generated in seeded chunks (what the stages do)."""
    chunks = chunks_of(prompts, temperature, n, max_new, stop, seed=seed, chunk_size=chunk_size)
    done = run_chunks(gen, chunks, partial, safe_point)
    return [outs for c in chunks for outs in done[c.key]]


class Counting:
    """A real generator that counts the prompts it is asked for."""

    def __init__(self, gen):
        self.gen, self.asked = gen, 0

    def generate(self, prompts, *args, **kw):
        self.asked += len(prompts)
        return self.gen.generate(prompts, *args, **kw)


@pytest.mark.fault
def test_chunked_sampling_is_the_same_after_an_interruption(tmp_path, base_models):
    """Sampling at temperature 1 in chunks of 8: stopped after chunk 2 and resumed from the partial
    file, the output equals the uninterrupted one, and only the missing chunks are generated."""
    import torch

    from engine.models.generation import HFGenerator

    task = get_task("arith_add3")
    prompts = [task.prompt(e, []) for e in task.load("test")[:30]]
    gen = Counting(HFGenerator(base_models / "tiny-arith-v1", "cpu", torch.float32, batch_size=8))
    args = (prompts, 1.0, 2, 24, task.stop_sequences)
    whole = generate_chunks(gen.gen, *args, seed=7, chunk_size=8)

    def stop_after_two(when):
        if when == "chunk2":
            raise StopRequested(when)

    final = tmp_path / "samples.jsonl"
    torch.manual_seed(123)  # whatever was drawn before does not matter
    with pytest.raises(StopRequested):
        generate_chunks(gen, *args, seed=7, chunk_size=8, partial=PartialFile(final, "m", print), safe_point=stop_after_two)
    assert gen.asked == 16
    torch.manual_seed(456)
    resumed = generate_chunks(gen, *args, seed=7, chunk_size=8, partial=PartialFile(final, "m", print))
    assert resumed == whole and gen.asked == 30
    assert len({c for outs in whole for c in outs}) > 10  # really sampled, not greedy
    other_seed = generate_chunks(gen.gen, *args, seed=8, chunk_size=8)
    assert other_seed != whole


def train_tiny(base_models, out, checkpoints=None, progress=None, **overrides):
    import torch

    from engine.config import SFTConfig
    from engine.train.sft import train

    task = get_task("arith_add3")
    pairs = [(task.prompt(e, []), e.rationale) for e in task.load("train")[:40]]
    cfg = SFTConfig(epochs=2, lr=1e-3, batch_size=4, grad_accum=2, warmup=0.1, max_length=96, **overrides)
    return train(base_models / "tiny-arith-v1", pairs, cfg, out, "cpu", torch.float32, 11, lambda _: None, progress,
                 checkpoints=checkpoints)


def weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.mark.fault
@pytest.mark.parametrize("mask_top_p, precision", [(1.0, "fp32"), (0.5, "fp32"), (0.5, "bf16")])
def test_sft_stopped_at_a_checkpoint_resumes_to_bit_identical_weights(tmp_path, base_models, mask_top_p, precision):
    """10 optimizer steps (5 an epoch), a checkpoint every 3: stopped at step 6 (mid-epoch 2) and
    resumed in a fresh call, training ends with exactly the weights and losses of an uninterrupted
    run (weight masking on: its mask is part of the checkpoint; bf16 weights: their fp32 masters are)."""
    from engine.train.checkpointing import TrainingCheckpoints

    settings = dict(mask_top_p=mask_top_p, precision=precision)
    whole = train_tiny(base_models, tmp_path / "whole", **settings)
    saved = []

    def stop_at_six(when):
        saved.append(when)
        if when == "checkpoint6":
            raise StopRequested(when)

    path = tmp_path / "sft_checkpoint.pt"
    with pytest.raises(StopRequested):
        train_tiny(base_models, tmp_path / "out", TrainingCheckpoints(path, 3, 0, "fp", safe_point=stop_at_six),
                   **settings)
    assert saved == ["checkpoint3", "checkpoint6"] and path.exists() and not (tmp_path / "out").exists()
    logs = []
    resumed = train_tiny(base_models, tmp_path / "out", TrainingCheckpoints(path, 3, 0, "fp", log=logs.append),
                         **settings)
    assert "resuming from the checkpoint at optimizer step 6 (epoch 2, 1 of its steps done)" in logs[0]
    timeless = lambda info: {k: v for k, v in info.items() if k != "train_s"}  # noqa: E731 -- seconds differ
    assert timeless(resumed) == timeless(whole) and whole["optimizer_steps"] == 10
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "out")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    # a checkpoint of other inputs is not resumed from
    logs.clear()
    TrainingCheckpoints(path, 3, 0, "other", log=logs.append).restore(None, None, None, None)
    assert "of other data, settings or model" in logs[0]


@pytest.mark.fault
def test_a_resumed_sft_rate_counts_only_the_steps_of_this_attempt(tmp_path, base_models):
    """Stopped at step 6 of 10 and resumed: the bar starts at 6/10 and the rate (so the ETA) is
    the 4 steps trained now over the time taken, not the 6 restored ones too."""
    from engine.runstate.progress import ProgressReporter
    from engine.train.checkpointing import TrainingCheckpoints

    def stop_at_six(when):
        if when == "checkpoint6":
            raise StopRequested(when)

    path = tmp_path / "sft_checkpoint.pt"
    with pytest.raises(StopRequested):
        train_tiny(base_models, tmp_path / "out", TrainingCheckpoints(path, 3, 0, "fp", safe_point=stop_at_six))
    clock = iter(range(1000))  # one second per reading: the rate is exact
    rows = []
    progress = ProgressReporter(lambda **row: rows.append(row), interval=0, clock=lambda: next(clock))
    train_tiny(base_models, tmp_path / "out", TrainingCheckpoints(path, 3, 0, "fp"), progress)
    assert (rows[0]["step"], rows[0]["total"], rows[0]["rate"]) == (6, 10, None)
    last = rows[-1]
    assert last["step"] == 10
    # readings: start (t0), then a check and a flush per step -> 8 s for 4 steps
    assert last["rate"] == pytest.approx(4 / 8)
    assert all(r["rate"] <= 1 for r in rows[1:])


@pytest.mark.fault
def test_sft_stop_without_a_due_checkpoint_saves_one(tmp_path, base_models):
    """A stop asked for between checkpoints is honoured after the next optimizer step, with a
    checkpoint saved there."""
    from engine.train.checkpointing import TrainingCheckpoints

    def safe_point(when):
        raise StopRequested(when)

    path = tmp_path / "sft_checkpoint.pt"
    with pytest.raises(StopRequested, match="checkpoint1"):
        train_tiny(base_models, tmp_path / "out", TrainingCheckpoints(path, 100, 0, "fp", lambda: True, safe_point))
    assert path.exists()


def test_checkpoint_settings_are_validated(tmp_path, capsys):
    for field, value in (("sft.checkpoint_every", "-1"), ("sft.checkpoint_minutes", "-0.5"), ("sft.checkpoint_every", "1.5")):
        assert main(["run", str(TINY_PRESET), "--set", f"{field}={value}", "--home", str(tmp_path / "h")]) == 2
        assert capsys.readouterr().err.startswith(f"error: {field}: got {value}")
        assert not (tmp_path / "h").exists()
