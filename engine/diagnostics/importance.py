"""Layer importance I^n = sum over layer n's weight matrices of |dL/dW * W|.

L is the mean response-token cross-entropy over the whole reasoning set, and dL/dW is its exact
gradient: each batch backpropagates (sum of its token losses) / (token count of the set), so the
gradients that accumulate in `.grad` add up to dL/dW, and |g * W| is taken once at the end. (Taking
|g_b * W| per batch and summing would measure sum_b |g_b W| instead, which grows with the number of
batches and is not the formula.) One forward and backward per batch, no per-example gradients.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import UserError
from ..train.textdata import IGNORE, Encoded, batches, encode_pairs
from .layers import Tally


@dataclass
class Importance:
    layers: dict[int, float]  # I^n
    modules: dict[int, dict[str, float]]  # layer -> module ("self_attn.q_proj") -> importance
    unassigned: dict[str, float]  # embedding / head / norm / layer_vector / other -> importance
    unassigned_names: dict[str, list[str]]
    tied: dict[str, str]  # parameter name -> the name it shares storage with (counted there once)
    loss: float  # mean response-token loss on the set
    n_examples: int
    n_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Importance":
        """The inverse of to_dict after a JSON round trip (which turns layer keys into strings)."""
        return cls(**{**d, "layers": {int(k): v for k, v in d["layers"].items()},
                      "modules": {int(k): v for k, v in d["modules"].items()}})


def scored_tokens(items: list[Encoded]) -> int:
    """Label positions the causal-LM loss scores (labels shift left by one)."""
    return sum(label != IGNORE for e in items for label in e.labels[1:])


def response_loss_sum(model, ids, mask, labels):
    """Sum of the response tokens' cross-entropy in one batch (logits at float32 precision or more)."""
    import torch
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE, reduction="sum")


def tied_aliases(model) -> dict[str, str]:
    first: dict[int, str] = {}
    aliases = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    return aliases


def importance_of_model(model, items: list[Encoded], batch_size: int, pad_id: int, progress=None) -> Importance:
    """Importance of an in-memory causal LM on encoded (prompt, response) items; grads are cleared after.
    `progress` (a ProgressReporter) hears the examples of each batch."""
    import torch

    n_tokens = scored_tokens(items)
    if n_tokens == 0:
        raise UserError("importance data: no response token fits within max_length; raise max_length")
    device = next(model.parameters()).device
    model.eval()
    model.zero_grad(set_to_none=True)
    loss_total = 0.0
    if progress is not None:
        progress.start(len(items), "examples")
    for ids, mask, labels in batches(items, batch_size, pad_id):
        loss = response_loss_sum(model, ids.to(device), mask.to(device), labels.to(device)) / n_tokens
        loss.backward()
        loss_total += loss.item()
        if progress is not None:
            progress.advance(len(ids), tokens=int(mask.sum()))
    tally = Tally()
    with torch.no_grad():
        for name, p in model.named_parameters():
            value = 0.0 if p.grad is None else (p.grad * p).abs().sum(dtype=torch.float64).item()
            tally.add(name, p.ndim, value)
    model.zero_grad(set_to_none=True)
    return Importance(**tally.as_dict(), tied=tied_aliases(model), loss=loss_total,
                      n_examples=len(items), n_tokens=n_tokens)


def importance(model_dir, pairs: list[tuple[str, str]], *, batch_size: int = 8, max_length: int = 512,
               device: str | None = None, dtype: str = "float32", progress=None, trust_remote_code: bool = False) -> Importance:
    """Load the checkpoint folder `model_dir` and its tokenizer, and score `pairs` (prompt, response)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype),
                                                 trust_remote_code=trust_remote_code).to(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return importance_of_model(model, encode_pairs(tokenizer, pairs, max_length), batch_size, pad_id, progress)
