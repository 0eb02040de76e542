"""The hf backend's fast decoder (engine/models/fast_generate.py) against transformers' `generate`,
on the CPU and (marked gpu, skipped without CUDA) on a GPU, where its steps replay a CUDA graph
(and run its Triton kernels where Triton is installed): greedy output identical, sampling from
softmax(logits / T), seeded draws, n and stop handling, the shared prefix prefilled once."""
from __future__ import annotations

import pytest
import torch

from engine.models.generation import HFGenerator
from engine.tasks.arith import ArithTask

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda])]


def qwen_gqa(folder, seed: int = 0, init: float = 0.02):
    """A random Qwen2 model with grouped-query attention (4 query heads on 2 key/value heads,
    head_dim 64) and the tiny model's character tokenizer, saved to `folder`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from engine.models.tiny import char_tokenizer

    tok = char_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=init)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def arith_prompts(count: int) -> tuple[list[str], tuple[str, ...]]:
    """Prompts of the tiny model's task, of different lengths (so padded), and its stop strings."""
    task = ArithTask("arith_add3", 3, "+")
    examples = task.load("test")
    return [task.prompt(e, examples[100 : 100 + i % 4]) for i, e in enumerate(examples[:count])], task.stop_sequences


def outputs(folder, device, fast, prompts, temperature, n, max_new, stop=(), seed=0, dtype=torch.float32, **kw):
    gen = HFGenerator(folder, device, dtype, batch_size=kw.pop("batch_size", 64), fast=fast)
    if fast:
        assert gen.decoder is not None
        gen.decoder.max_sequences = kw.pop("max_sequences", None)
    torch.manual_seed(seed)
    try:
        return gen.generate(prompts, temperature, n, max_new, stop)
    finally:
        gen.close()


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_output_is_generates_on_the_trained_tiny_model(base_models, device):
    prompts, stop = arith_prompts(40)
    plain = outputs(base_models / "tiny-arith-v1", device, False, prompts, 0.0, 1, 40, stop)
    # generate() refuses greedy n > 1; the fast decoder prefills once and decodes n equal copies
    fast = outputs(base_models / "tiny-arith-v1", device, True, prompts, 0.0, 2, 40, stop)
    assert fast == [o * 2 for o in plain]
    assert sum(bool(o[0]) for o in plain) > 30  # real answers


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_output_is_generates_with_grouped_query_attention_and_sub_batches(tmp_path, device):
    folder = qwen_gqa(tmp_path / "qwen", init=0.2)  # wide logits: no near-ties between kernels
    prompts, _ = arith_prompts(24)
    plain = outputs(folder, device, False, prompts, 0.0, 1, 30, batch_size=10)
    # 4 sequences at most: each batch of 10 prompts x 2 samples runs as sorted sub-batches
    assert outputs(folder, device, True, prompts, 0.0, 2, 30, batch_size=10, max_sequences=4) == [o * 2 for o in plain]
    assert len({o[0] for o in plain}) > 12  # the prompts do lead to different outputs


@pytest.mark.parametrize("device", DEVICES)
def test_samples_are_seeded_and_differ_across_the_n(tmp_path, device):
    folder = qwen_gqa(tmp_path / "qwen")
    prompts, _ = arith_prompts(8)
    first = outputs(folder, device, True, prompts, 1.0, 3, 20, seed=1)
    assert outputs(folder, device, True, prompts, 1.0, 3, 20, seed=1) == first
    assert outputs(folder, device, True, prompts, 1.0, 3, 20, seed=2) != first
    assert [len(o) for o in first] == [3] * 8 and all(len(set(o)) == 3 for o in first)


@pytest.mark.parametrize("device", DEVICES)
def test_a_token_is_drawn_from_softmax_of_logits_over_temperature(device):
    from engine.models.fast_generate import pick_tokens

    torch.manual_seed(0)
    logits = torch.randn(50, device=device) * 2
    draws = pick_tokens(logits.expand(200_000, -1).contiguous(), 0.7)
    freq = torch.bincount(draws, minlength=50).double().cpu() / draws.numel()

    def distance(temperature):
        return 0.5 * (freq - torch.softmax(logits.double().cpu() / temperature, -1)).abs().sum().item()

    assert distance(0.7) < 0.01 and distance(1.0) > 0.03 and distance(0.5) > 0.03
    assert torch.equal(pick_tokens(logits[None], 0.0), logits.argmax()[None])


@pytest.mark.parametrize("device", DEVICES)
def test_stop_strings_cut_samples_and_end_decoding_early(tmp_path, device):
    from engine.models.fast_generate import CHECK_EVERY
    from engine.tasks.base import cut_at_stop

    folder = qwen_gqa(tmp_path / "qwen", init=0.2)
    prompts, _ = arith_prompts(12)
    uncut = outputs(folder, device, True, prompts, 1.0, 2, 80, seed=3)
    stop = ("5", "=")
    cut = outputs(folder, device, True, prompts, 1.0, 2, 80, stop, seed=3)
    assert cut == [[cut_at_stop(o, stop) for o in os] for os in uncut]
    assert sum(any(s in o for s in stop) for os in uncut for o in os) > 12
    gen = HFGenerator(folder, device, torch.float32, fast=True)
    try:
        ids = [gen.tokenizer(p)["input_ids"] for p in prompts]
        asked = []
        rows = gen.decoder.generate(ids, 2, 1.0, 200, [], finished=lambda running: asked.append(len(running)) or True)
        # asked once, after CHECK_EVERY steps, about all 24 running sequences, which then end
        assert asked == [24] and [len(r) for r in rows] == [CHECK_EVERY] * 24
    finally:
        gen.close()


@pytest.mark.parametrize("device", DEVICES)
def test_a_sample_ends_at_its_first_end_of_sequence_id(base_models, device):
    prompts, _ = arith_prompts(16)
    gen = HFGenerator(base_models / "tiny-arith-v1", device, torch.float32, fast=True)
    try:
        ids = [gen.tokenizer(p)["input_ids"] for p in prompts]
        rows = gen.decoder.generate(ids, 1, 0.0, 60, gen.eos_ids)
    finally:
        gen.close()
    ended = [r for r in rows if r[-1] in gen.eos_ids]
    assert len(ended) > 8 and all(sum(t in gen.eos_ids for t in r) == 1 for r in ended)
    assert all(len(r) == 60 for r in rows if r not in ended)


@pytest.mark.parametrize("device", DEVICES)
def test_a_shared_few_shot_prefix_is_prefilled_once_and_greedy_output_is_still_generates(tmp_path, device):
    folder = qwen_gqa(tmp_path / "qwen", init=0.2)
    task = ArithTask("arith_add3", 3, "+")
    examples = task.load("test")
    prompts = [task.prompt(e, examples[100:103]) for e in examples[:16]]  # the same three exemplars
    plain = outputs(folder, device, False, prompts, 0.0, 1, 30, batch_size=8)
    gen = HFGenerator(folder, device, torch.float32, batch_size=8, fast=True)
    try:
        fast = gen.generate(prompts, 0.0, 2, 30)
        ids = [gen.tokenizer(p)["input_ids"] for p in prompts[8:]]
        common = next(j for j in range(len(ids[0])) if any(p[j] != ids[0][j] for p in ids))
        assert gen.decoder.shared_prefix == common > 100  # the exemplars' tokens, run once for the batch
    finally:
        gen.close()
    assert fast == [o * 2 for o in plain]
    assert len({o[0] for o in plain}) > 8
