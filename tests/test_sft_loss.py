"""The hf SFT loop's loss and batching (engine/train/loss.py): the
chunked head loss gives the loss and the gradients of the model's own loss; bucketing a step's
examples by length gives the update of the step as one padded batch; a real fit on the tiny
model lowers its loss. The last test needs a GPU (pytest -m gpu)."""
from __future__ import annotations

import random

import pytest
import torch

from engine.config import SFTConfig
from engine.train.loss import loss_positions, optimizer_step_batches, response_loss_sum
from engine.train.textdata import IGNORE, batches, collate, encode_pairs


def tiny(seed: int = 0):
    from engine.models.tiny import new_tiny_model

    model, tokenizer = new_tiny_model(seed=seed)
    return model.float(), tokenizer


def pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Prompts and responses of random lengths, so the padding differs between rows."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        terms = [rng.randint(0, 999) for _ in range(rng.randint(2, 6))]
        out.append(("+".join(map(str, terms)) + "=", " so ".join(str(t) for t in terms) * rng.randint(1, 3) + f" {sum(terms)}"))
    return out


def grads(model) -> dict:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_close(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        err = (a[name] - b[name]).norm() / b[name].norm().clamp_min(1e-12)
        assert err < tol, (name, float(err))


def test_chunked_head_loss_matches_the_models_loss_and_gradients():
    model, tokenizer = tiny()
    ids, mask, labels = collate(encode_pairs(tokenizer, pairs(6, 1), 96), tokenizer.pad_token_id)
    assert (mask == 0).any() and (labels == IGNORE).any()
    want = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    want.backward()
    want_grads = grads(model)

    positions, targets = loss_positions(labels)
    n = int((labels[:, 1:] != IGNORE).sum())
    assert len(positions) == len(targets) == n
    # chunks of 7 rows: several chunks and a ragged last one; no attention mask (right padding)
    got = response_loss_sum(model, ids, positions, targets, chunk=7) / n
    got.backward()
    assert abs(got.item() - want.item()) < 1e-5 * want.item()
    assert_close(grads(model), want_grads, 1e-4)


def test_a_bucketed_step_gives_the_update_of_the_step_as_one_padded_batch():
    model, tokenizer = tiny(seed=2)
    items = encode_pairs(tokenizer, pairs(22, 3), 96)
    seed, bs, accum = 5, 3, 4
    steps = [step.micro_batches for step in optimizer_step_batches(items, bs, accum, tokenizer.pad_token_id, seed)]
    # the same examples per step as the unsorted batches, the last step taking the rest
    plain = list(batches(items, bs * accum, tokenizer.pad_token_id, seed))
    assert [sum(len(m[0]) for m in step) for step in steps] == [12, 10] == [len(b[0]) for b in plain]
    lengths = torch.cat([mask.sum(1) for _, mask, _ in steps[0]]).tolist()
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]  # sorted by length inside the step

    for step, (ids, mask, labels) in zip(steps, plain):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        want = grads(model)
        n = sum(int((lab[:, 1:] != IGNORE).sum()) for _, _, lab in step)
        for m_ids, _, m_labels in step:
            (response_loss_sum(model, m_ids, *loss_positions(m_labels)) / n).backward()
        assert_close(grads(model), want, 1e-4)


def test_fit_lowers_the_loss_and_reports_every_step():
    from engine.train.sft import fit

    model, tokenizer = tiny(seed=4)
    items = encode_pairs(tokenizer, [("1+2=", "3"), ("2+2=", "4"), ("3+4=", "7"), ("5+1=", "6")] * 8, 32)
    seen = []

    class Progress:
        unit = None

        def start(self, total, unit, restored=0):
            seen.append(("start", total))

        def update(self, step, loss=None, tokens=0):
            seen.append((step, loss, tokens))

    cfg = SFTConfig(epochs=4, lr=3e-3, batch_size=4, grad_accum=2, warmup=0.1)
    logs = []
    info = fit(model, items, tokenizer.pad_token_id, cfg, "cpu", 0, logs.append, Progress())
    assert seen[0] == ("start", 16) and [s[0] for s in seen[1:]] == list(range(1, 17))
    assert all(tokens > 0 for _, _, tokens in seen[1:])
    assert info["optimizer_steps"] == 16 and info["final_loss"] == pytest.approx(seen[-1][1])
    assert seen[-1][1] < 0.5 * seen[1][1]
    assert len(logs) == 4 and logs[0].startswith("sft epoch 1/4: mean loss")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_bf16_loss_follows_the_fp32_loss_and_the_fast_options_train():
    from engine.train.sft import fit

    model, tokenizer = tiny(seed=6)
    model = model.cuda()
    ids, mask, labels = collate(encode_pairs(tokenizer, pairs(8, 7), 96), tokenizer.pad_token_id)
    ids, mask, labels = ids.cuda(), mask.cuda(), labels.cuda()
    want = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    positions, targets = loss_positions(labels.cpu())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = response_loss_sum(model, ids, positions.cuda(), targets.cuda(), torch.bfloat16) / len(targets)
    assert abs(float(got) - want) < 2e-2 * want

    items = encode_pairs(tokenizer, pairs(64, 8), 96)
    for options in ({}, {"compile": True}, {"grad_checkpointing": True}):
        trained = tiny(seed=6)[0].cuda()
        cfg = SFTConfig(epochs=3, lr=2e-3, batch_size=8, grad_accum=2, **options)
        logged = []
        info = fit(trained, items, tokenizer.pad_token_id, cfg, "cuda", 0, logged.append)
        losses = [line for line in logged if line.startswith("sft epoch")]  # not "sft: liger kernels"
        first, last = (float(line.split()[-1]) for line in (losses[0], losses[-1]))
        assert info["optimizer_steps"] == 12 and last < 0.8 * first, (options, losses)
