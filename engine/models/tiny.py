"""The embedded default's tiny model: a character tokenizer and a small Llama config, made offline.

Nothing is downloaded: the tokenizer's vocabulary is printable ASCII, and the model starts from
random weights (see `engine.train.builtin` for its short pre-training on synthetic arithmetic).
"""
from __future__ import annotations

from pathlib import Path

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]


def char_tokenizer():
    """A PreTrainedTokenizerFast with one token per character (plus pad / bos / eos / unk)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=512,
    )


def tiny_config(vocab_size: int, layers: int = 4, hidden: int = 128, heads: int = 4, max_len: int = 256):
    """A Llama-style decoder with tied embeddings (like Qwen2.5-0.5B), about 0.8M parameters."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_len,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        rms_norm_eps=1e-5,
    )


def new_tiny_model(folder: str | Path | None = None, seed: int = 0, **config_kw):
    """A randomly initialised tiny model and its tokenizer; saved to `folder` when given."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = char_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(len(tokenizer), **config_kw))
    if folder is not None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return model, tokenizer
