"""Text generation backends. `hf` (transformers, CPU or one GPU) is verified; `vllm` is written
against vLLM's documented offline API and not verified here (see README)."""
from __future__ import annotations

from typing import Callable, Optional, Protocol, Union

from ..tasks.base import cut_at_stop

# A prompt is plain text, or chat messages that the backend renders with the model's chat template.
Prompt = Union[str, list[dict]]
# Told after each batch: (prompts done in it, tokens generated in it).
OnBatch = Optional[Callable[[int, int], None]]


class Generator(Protocol):
    def generate(self, prompts: list[Prompt], temperature: float, n: int, max_new_tokens: int,
                 stop: tuple[str, ...] = (), on_batch: OnBatch = None) -> list[list[str]]:
        """n completions for each prompt (greedy when temperature == 0), cut at the first stop string."""

    def close(self) -> None:
        """Free the model's memory (GPU memory included) before the next stage."""


def render_prompt(tokenizer, prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


class HFGenerator:
    def __init__(self, path, device: str, dtype, batch_size: int = 64):
        from .loading import load_model, load_tokenizer

        self.tokenizer = load_tokenizer(path, padding_side="left")
        self.model = load_model(path, device, dtype).eval()
        self.device, self.batch_size = device, batch_size

    def _encode(self, prompts: list[Prompt]):
        # A chat template already holds the special tokens (BOS) it wants.
        chat = not isinstance(prompts[0], str)
        texts = [render_prompt(self.tokenizer, p) for p in prompts]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)

    def generate(self, prompts, temperature, n, max_new_tokens, stop=(), on_batch: OnBatch = None):
        import torch

        out: list[list[str]] = []
        for start in range(0, len(prompts), self.batch_size):
            enc = self._encode(prompts[start : start + self.batch_size]).to(self.device)
            sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else dict(do_sample=False)
            with torch.inference_mode():
                ids = self.model.generate(
                    **enc, max_new_tokens=max_new_tokens, num_return_sequences=n,
                    pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id, **sampling,
                )
            new = ids[:, enc["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            texts = [cut_at_stop(t, stop) for t in texts]
            out.extend(texts[i : i + n] for i in range(0, len(texts), n))
            if on_batch is not None:
                on_batch(len(enc["input_ids"]), int((new != self.tokenizer.pad_token_id).sum()))
        return out

    def close(self) -> None:
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def make_generator(backend: str, path, device: str, dtype, batch_size: int):
    if backend == "vllm":
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator(path, dtype)
    return HFGenerator(path, device, dtype, batch_size=batch_size)
