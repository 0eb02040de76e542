"""The SFT objective of every backend (the hf loop, engine.train.sft, and each DeepSpeed rank,
engine.train.deepspeed_worker): the loss on the response tokens only, averaged over the response
tokens of a whole optimizer step (over all ranks), with the step's examples sorted by length into
micro-batches (optimizer_step_batches) and the head's loss computed in chunks (response_loss_sum).
One step's forward and backward is accumulate_step; the backends differ only in what a backward
and an optimizer step are.

The loss is computed from the last hidden states in chunks of tokens, so the
vocabulary-wide logits (151,936 columns for Qwen2.5) never exist for a whole batch at once.

Only the positions whose next token is a response token are projected at all (the prompt's
positions carry no loss), and their gradients are computed in the same pass as the loss: each
chunk's logits live only while that chunk is processed, and backward only scales the stored
gradients by the incoming one. The result is the *sum* of the token losses; the caller divides by
the response tokens of the whole optimizer step (engine.train.sft), which is what makes length
bucketing exact.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from .schedule import shuffled
from .textdata import IGNORE, Encoded, collate

CHUNK_TOKENS = 4096  # rows of logits (in fp32) alive at once: 4096 x 151,936 x 4 bytes = 2.5 GB


def loss_positions(labels):
    """(flat indices into the batch's shifted hidden states, their target token ids) for every
    position whose next token is a response token; from CPU labels, so no device sync is needed."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    width = labels.shape[1]
    rows, cols = keep.nonzero(as_tuple=True)
    return rows * width + cols, targets[keep]


def _linear_ce_sum(torch):
    class LinearCrossEntropySum(torch.autograd.Function):
        """sum_i CE(hidden_i @ weight.T, target_i), with the gradients computed in forward."""

        @staticmethod
        def forward(ctx, hidden, weight, targets, chunk):
            grad_hidden = torch.empty_like(hidden)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, hidden.shape[0], chunk):
                h, y = hidden[start : start + chunk], targets[start : start + chunk]
                logits = (h @ weight.T).float()
                lse = logits.logsumexp(-1)
                total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
                # d(sum CE)/d(logits) = softmax - one_hot(target), built in place in the logits
                grad = logits.sub_(lse[:, None]).exp_()
                grad[torch.arange(len(y), device=y.device), y] -= 1
                grad = grad.to(hidden.dtype)
                grad_hidden[start : start + chunk] = grad @ weight
                grad_weight += (grad.T @ h).float()
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
            return total

        @staticmethod
        def backward(ctx, grad_total):
            grad_hidden, grad_weight = ctx.saved_tensors
            return grad_hidden * grad_total.to(grad_hidden.dtype), grad_weight * grad_total.to(grad_weight.dtype), None, None

    return LinearCrossEntropySum


_FUNCTION = None


def response_loss_sum(model, input_ids, positions, targets, compute_dtype=None, chunk: int = CHUNK_TOKENS,
                      linear_ce=None, **forward):
    """Summed cross-entropy of a causal LM on the given positions (see loss_positions). The
    decoder runs as usual (under whatever autocast is active); the head's projection runs here in
    `compute_dtype` (the hidden states' dtype when None) with fp32 softmax statistics, chunked as
    above or by `linear_ce(hidden, weight, targets)` (a fused kernel, engine.train.kernels)."""
    import torch

    global _FUNCTION
    if _FUNCTION is None:
        _FUNCTION = _linear_ce_sum(torch)
    hidden = model.get_decoder()(input_ids=input_ids, **forward).last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
    weight = model.get_output_embeddings().weight
    dtype = compute_dtype or hidden.dtype
    with torch.autocast(hidden.device.type, enabled=False):
        if linear_ce is not None:
            return linear_ce(hidden.to(dtype), weight.to(dtype), targets)
        return _FUNCTION.apply(hidden.to(dtype), weight.to(dtype), targets, chunk)


class Step(NamedTuple):
    """One optimizer step as one rank runs it: its collated micro-batches, the response tokens of
    the whole step over all ranks (what the summed loss is divided by) and its real tokens."""

    micro_batches: list
    targets: int
    tokens: int


def _targets(item: Encoded) -> int:
    return sum(label != IGNORE for label in item.labels[1:])


def optimizer_step_batches(items: list[Encoded], batch_size: int, grad_accum: int, pad_id: int, shuffle_seed: int,
                           rank: int = 0, world: int = 1):
    """One epoch as optimizer steps (Step) of `rank` of `world`. A step takes the next
    batch_size x grad_accum x world items of the shuffled order (the last step of an epoch takes
    what is left) and sorts them by length; rank r takes every world-th of them from the r-th, so
    each micro-batch pads to a similar length and every rank a similar share. A rank whose share
    is one short gets a copy of an item with no loss on it, so that every rank runs as many
    micro-batches (ZeRO's collectives need it). With the loss averaged over the step's response
    tokens, neither the order nor the split changes the update: with world 1 this is the hf
    loop's step, with world W the same step over W GPUs."""
    order = shuffled(len(items), shuffle_seed)
    per_step = batch_size * grad_accum * world
    for start in range(0, len(order), per_step):
        group = sorted(order[start : start + per_step], key=lambda i: len(items[i].input_ids))
        mine = [items[i] for i in group[rank::world]]
        share = -(-len(group) // world)
        filler = items[group[0]]
        mine += [Encoded(filler.input_ids, [IGNORE] * len(filler.labels))] * (share - len(mine))
        micro = [collate(mine[m : m + batch_size], pad_id) for m in range(0, len(mine), batch_size)]
        tokens = sum(len(e.input_ids) for e in mine[: len(group[rank::world])])
        yield Step(micro, sum(_targets(items[i]) for i in group), tokens)


def accumulate_step(loss_of: Callable, step: Step, device, autocast=None,
                    backward: Callable = lambda loss, last: loss.backward()):
    """Forward and backward of one optimizer step's micro-batches: loss_of(input_ids, positions,
    targets) is a micro-batch's summed response-token loss (response_loss_sum over the model, or
    a DeepSpeed engine over ResponseLoss); divided by the step's response tokens it is handed to
    backward(loss, last micro-batch?) (hf: loss.backward(); DeepSpeed: its engine's backward and
    step). Returns the summed loss of this rank's micro-batches (a tensor, not synchronised)."""
    import contextlib

    import torch

    loss_sum = torch.zeros((), device=device)
    for i, (ids, _, labels) in enumerate(step.micro_batches):
        positions, targets = loss_positions(labels)
        with autocast or contextlib.nullcontext():
            part = loss_of(ids.to(device, non_blocking=True), positions.to(device, non_blocking=True),
                           targets.to(device, non_blocking=True))
        backward(part / max(1, step.targets), i == len(step.micro_batches) - 1)
        loss_sum += part.detach()
    return loss_sum


def response_loss_module(model, compute_dtype=None):
    """The model with response_loss_sum as its forward(input_ids, positions, targets): what
    DeepSpeed wraps, so that its engine's forward runs the same loss as the hf loop. Under ZeRO-3
    the head's weight is registered as used by this module's forward (it is read outside the
    head module), so ZeRO gathers it for the loss."""
    import torch

    class ResponseLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, positions, targets):
            return response_loss_sum(self.model, input_ids, positions, targets, compute_dtype)

    return ResponseLoss()
