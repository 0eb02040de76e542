"""The response-only SFT loss computed from the last hidden states in chunks of tokens, so the
vocabulary-wide logits (151,936 columns for Qwen2.5) never exist for a whole batch at once.

Only the positions whose next token is a response token are projected at all (the prompt's
positions carry no loss), and their gradients are computed in the same pass as the loss: each
chunk's logits live only while that chunk is processed, and backward only scales the stored
gradients by the incoming one. The result is the *sum* of the token losses; the caller divides by
the response tokens of the whole optimizer step (engine.train.sft), which is what makes length
bucketing exact.
"""
from __future__ import annotations

from .textdata import IGNORE

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


def response_loss_sum(model, input_ids, positions, targets, compute_dtype=None, chunk: int = CHUNK_TOKENS, **forward):
    """Summed cross-entropy of a causal LM on the given positions (see loss_positions). The
    decoder runs as usual (under whatever autocast is active); the head's projection runs here in
    `compute_dtype` (the hidden states' dtype when None) with fp32 softmax statistics."""
    import torch

    global _FUNCTION
    if _FUNCTION is None:
        _FUNCTION = _linear_ce_sum(torch)
    hidden = model.get_decoder()(input_ids=input_ids, **forward).last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
    weight = model.get_output_embeddings().weight
    dtype = compute_dtype or hidden.dtype
    with torch.autocast(hidden.device.type, enabled=False):
        return _FUNCTION.apply(hidden.to(dtype), weight.to(dtype), targets, chunk)
