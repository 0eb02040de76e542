"""vLLM generation backend, written against vLLM's documented offline API (`LLM.generate` with
`SamplingParams`). NOT verified here: vLLM could not be installed on the CPU machines or the lent
GPU machines (see README). Selected with `generation.backend = "vllm"`."""
from __future__ import annotations


class VLLMGenerator:
    def __init__(self, path, dtype, seed: int = 0):
        from vllm import LLM

        dtype_name = str(dtype).removeprefix("torch.")
        self.llm = LLM(model=str(path), dtype=dtype_name, seed=seed)

    def generate(self, prompts, temperature, n, max_new_tokens, stop=()):
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, max_tokens=max_new_tokens, stop=list(stop) or None)
        if prompts and not isinstance(prompts[0], str):  # chat messages: rendered with the model's template
            outputs = self.llm.chat(prompts, params)
        else:
            outputs = self.llm.generate(prompts, params)
        return [[c.text for c in o.outputs] for o in outputs]

    def close(self) -> None:
        # Free GPU memory before the next stage (SFT) takes the card.
        del self.llm
        import gc

        gc.collect()
