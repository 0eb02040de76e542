"""Text generation backends. `hf` (transformers, CPU or one GPU) is verified; `vllm` is written
against vLLM's documented offline API and not verified here (see README).

Decoding is the same in both and owes nothing to a checkpoint's generation_config.json (Qwen's
instruct models ship repetition_penalty 1.05-1.1, top_p 0.8, top_k 20): every setting is passed
explicitly (`sampling_settings`), and generation ends at any of the checkpoint's end-of-sequence
ids (`eos_token_ids`: the generation config's, the model config's and the tokenizer's)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Union

from ..tasks.base import cut_at_stop

# A prompt is plain text, or chat messages that the backend renders with the model's chat template.
Prompt = Union[str, list[dict]]
# Told after each batch: (prompts done in it, tokens generated in it).
OnBatch = Optional[Callable[[int, int], None]]


class Generator(Protocol):
    def generate(self, prompts: list[Prompt], temperature: float, n: int, max_new_tokens: int,
                 stop: tuple[str, ...] = (), on_batch: OnBatch = None, seed: int | None = None) -> list[list[str]]:
        """n completions for each prompt (greedy when temperature == 0), cut at the first stop
        string. With a seed, the sampling of this call depends on nothing drawn before it."""

    def close(self) -> None:
        """Free the model's memory (GPU memory included) before the next stage."""


def sampling_settings(temperature: float) -> dict:
    """The decoding settings of every call, as recorded in the stage info: plain sampling at
    `temperature` (greedy at 0), no nucleus or top-k truncation, no repetition penalty."""
    return {"temperature": temperature, "do_sample": temperature > 0, "top_p": 1.0, "top_k": "off",
            "repetition_penalty": 1.0}


def eos_token_ids(path, tokenizer, trust_remote_code: bool = False) -> list[int]:
    """Every end-of-sequence id the checkpoint names: its generation config's (only this is
    taken from it), its model config's and the tokenizer's, in that order, without repeats."""
    from transformers import AutoConfig, GenerationConfig

    found = []
    try:
        found.append(GenerationConfig.from_pretrained(str(path)).eos_token_id)
    except OSError:  # no generation_config.json
        pass
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    found += [getattr(config, "eos_token_id", None), tokenizer.eos_token_id]
    ids: list[int] = []
    for value in found:
        for i in value if isinstance(value, list) else [value]:
            if i is not None and i not in ids:
                ids.append(int(i))
    return ids


def render_prompt(tokenizer, prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


class HFGenerator:
    """transformers models. On a GPU (or with fast=True) Llama-layout models decode through
    fast_generate.StaticDecoder (static cache, prompt prefilled once per n samples, CUDA-graph
    steps); elsewhere, and with fast=False, through `generate` with its dynamic cache."""

    def __init__(self, path, device: str, dtype, batch_size: int = 64, fast: Optional[bool] = None,
                 trust_remote_code: bool = False):
        from .loading import load_model, load_tokenizer

        from transformers import GenerationConfig

        self.tokenizer = load_tokenizer(path, padding_side="left", trust_remote_code=trust_remote_code)
        self.eos_ids = eos_token_ids(path, self.tokenizer, trust_remote_code)
        self.model = load_model(path, device, dtype, trust_remote_code).eval()
        # Nothing of the checkpoint's generation_config.json fills a setting generate() is not given.
        self.model.generation_config = GenerationConfig()
        self.device, self.batch_size = device, batch_size
        self.decoder = None
        if (device.startswith("cuda") if fast is None else fast):
            from .fast_generate import StaticDecoder, supports

            if supports(self.model):
                self.decoder = StaticDecoder(self.model, self.tokenizer.pad_token_id)

    def _texts(self, prompts: list[Prompt]) -> tuple[list[str], bool]:
        # A chat template already holds the special tokens (BOS) it wants.
        chat = not isinstance(prompts[0], str)
        return [render_prompt(self.tokenizer, p) for p in prompts], not chat

    def generate(self, prompts, temperature, n, max_new_tokens, stop=(), on_batch: OnBatch = None, seed=None):
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        out: list[list[str]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            new = self._new_tokens(batch, temperature, n, max_new_tokens, stop)
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            texts = [cut_at_stop(t, stop) for t in texts]
            out.extend(texts[i : i + n] for i in range(0, len(texts), n))
            if on_batch is not None:
                on_batch(len(batch), sum(t != self.tokenizer.pad_token_id for row in new for t in row))
        return out

    def _new_tokens(self, batch: list[Prompt], temperature: float, n: int, max_new_tokens: int,
                    stop: tuple[str, ...]) -> list[list[int]]:
        """The new token ids of n samples per prompt (prompt i's at i*n .. i*n+n-1)."""
        import torch

        texts, special = self._texts(batch)
        if self.decoder is not None:
            prompts = self.tokenizer(texts, add_special_tokens=special)["input_ids"]

            def finished(rows):  # every running sequence has written a stop string (the text is cut there)
                texts = self.tokenizer.batch_decode(rows, skip_special_tokens=True) if stop else [""]
                return all(any(s in t for s in stop) for t in texts)

            return self.decoder.generate(prompts, n, temperature, max_new_tokens, self.eos_ids, finished)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=special).to(self.device)
        s = sampling_settings(temperature)
        with torch.inference_mode():
            ids = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, num_return_sequences=n, do_sample=s["do_sample"],
                temperature=temperature if s["do_sample"] else 1.0, top_p=s["top_p"], top_k=0,
                repetition_penalty=s["repetition_penalty"], pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.eos_ids,
            )
        return ids[:, enc["input_ids"].shape[1] :].tolist()

    def close(self) -> None:
        import gc

        import torch

        self.model = None
        if self.decoder is not None:
            self.decoder.release()
            self.decoder = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@dataclass(frozen=True)
class Chunk:
    """chunk_size prompts of one call with their own seed; `key` names it in the partial file."""

    key: str
    prompts: list
    temperature: float
    n: int
    max_new_tokens: int
    stop: tuple[str, ...]
    seed: int

    def run(self, generator, on_batch=None) -> list[list[str]]:
        return generator.generate(self.prompts, self.temperature, self.n, self.max_new_tokens, self.stop,
                                  on_batch=on_batch, seed=self.seed)
