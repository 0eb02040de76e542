"""One SFT objective on every backend (engine/train/loss.py): the hf loop's step and the DeepSpeed
worker's step function (engine.train.deepspeed_worker.train_step, called in this process with an
engine that does what DeepSpeed's does with the calls the worker makes) give the same loss and
the same gradients on the same batch, on one rank and split over two (whose gradients DeepSpeed
averages)."""
from __future__ import annotations

import copy
import functools


from engine.train.deepspeed_worker import train_step
from engine.train.loss import accumulate_step, optimizer_step_batches, response_loss_module, response_loss_sum
from engine.train.textdata import encode_pairs

from test_sft_loss import assert_close, grads, pairs, tiny


class OneProcessEngine:
    """What the worker uses of DeepSpeed's engine, on one process: forward is the wrapped module's,
    backward(loss, scale_wrt_gas=False) is loss.backward() (DeepSpeed would reduce the gradients
    over the ranks at the boundary), step() is left to the test (it compares the gradients)."""

    def __init__(self, module):
        self.module, self.boundaries, self.steps = module, [], 0

    def __call__(self, *args):
        return self.module(*args)

    def set_gradient_accumulation_boundary(self, last: bool) -> None:
        self.boundaries.append(last)

    def backward(self, loss, scale_wrt_gas: bool = True) -> None:
        assert scale_wrt_gas is False  # the worker divides by the step's tokens itself
        loss.backward()

    def step(self) -> None:
        self.steps += 1


def hf_step(model, step):
    loss = accumulate_step(functools.partial(response_loss_sum, model), step, "cpu")
    return float(loss) / step.targets, grads(model)


def test_the_deepspeed_step_has_the_hf_steps_loss_and_gradients():
    model, tokenizer = tiny(seed=3)
    items = encode_pairs(tokenizer, pairs(21, 4), 96)
    hf = list(optimizer_step_batches(items, 3, 4, tokenizer.pad_token_id, 9))
    assert [len(s.micro_batches) for s in hf] == [4, 3]  # 12 + 9 examples, micro-batches of 3
    for step in hf:
        want_loss, want = hf_step(model, step)
        ds_model = copy.deepcopy(model)
        engine = OneProcessEngine(response_loss_module(ds_model))
        got_loss = float(train_step(engine, step, "cpu", world=1)) / step.targets
        assert abs(got_loss - want_loss) < 1e-6 * want_loss
        assert_close(grads(ds_model), want, 1e-6)
        assert engine.boundaries == [False] * (len(step.micro_batches) - 1) + [True]
        assert engine.steps == len(step.micro_batches)


def test_two_ranks_average_to_the_one_gpu_step():
    model, tokenizer = tiny(seed=5)
    items = encode_pairs(tokenizer, pairs(23, 6), 96)
    pad = tokenizer.pad_token_id
    # a step of 12 examples: micro-batch 2 x grad-accum 3 x 2 GPUs, or 2 x 6 on one GPU
    one = list(optimizer_step_batches(items, 2, 6, pad, 4))
    ranks = [list(optimizer_step_batches(items, 2, 3, pad, 4, rank=r, world=2)) for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 2
    last = [r[-1] for r in ranks]  # 11 examples left: one rank gets a copy with no loss on it
    assert [len(s.micro_batches) for s in last] == [3, 3] and last[0].targets == last[1].targets
    for whole, r0, r1 in zip(one, *ranks):
        per_rank, loss = [], 0.0
        for step in (r0, r1):
            rank_model = copy.deepcopy(model)
            loss += float(train_step(OneProcessEngine(response_loss_module(rank_model)), step, "cpu", world=2))
            per_rank.append(grads(rank_model))
        averaged = {k: (per_rank[0][k] + per_rank[1][k]) / 2 for k in per_rank[0]}  # DeepSpeed's all-reduce
        want_loss, want = hf_step(model, whole)
        assert r0.targets == whole.targets and abs(loss / whole.targets - want_loss) < 1e-6 * want_loss
        assert_close(averaged, want, 1e-5)
