"""Prompt/response pairs -> token tensors with the loss on the response only.

Used by SFT, the base build and the importance diagnostic, so they all mask the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..models.generation import render_prompt
from .schedule import shuffled

IGNORE = -100  # label value that the cross-entropy loss skips


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode_pair(tokenizer, prompt, response: str, max_length: int) -> Encoded:
    """Tokens of prompt + response + EOS; labels are IGNORE over the prompt. Truncated on the right.
    A prompt given as chat messages is rendered with the tokenizer's chat template."""
    if isinstance(prompt, str):
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    else:
        prompt_ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    return Encoded(ids, labels)


def encode_pairs(tokenizer, pairs, max_length: int) -> list[Encoded]:
    return [encode_pair(tokenizer, p, r, max_length) for p, r in pairs]


def collate(items: list[Encoded], pad_id: int):
    """Right-padded (input_ids, attention_mask, labels) tensors for one batch."""
    import torch

    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, e in enumerate(items):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return ids, mask, labels


def batches(items: list[Encoded], batch_size: int, pad_id: int, shuffle_seed: int | None = None):
    """Yield collated batches in order, or shuffled reproducibly when a seed is given."""
    order = list(range(len(items))) if shuffle_seed is None else shuffled(len(items), shuffle_seed)
    for start in range(0, len(order), batch_size):
        yield collate([items[i] for i in order[start : start + batch_size]], pad_id)
