"""vLLM generation backend, written against vLLM's documented offline API (`LLM.generate` with
`SamplingParams`). NOT verified here: vLLM could not be installed on the CPU machines or the lent
GPU machines (see README). Selected with `generation.backend = "vllm"`."""
from __future__ import annotations


class VLLMGenerator:
    def __init__(self, path, dtype, chat_template: bool = False, seed: int = 0):
        from vllm import LLM

        dtype_name = str(dtype).removeprefix("torch.")
        self.llm = LLM(model=str(path), dtype=dtype_name, seed=seed)
        self.chat_template = chat_template

    def generate(self, prompts, temperature, n, max_new_tokens, stop=()):
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, max_tokens=max_new_tokens, stop=list(stop) or None)
        if self.chat_template:
            outputs = self.llm.chat([[{"role": "user", "content": p}] for p in prompts], params)
        else:
            outputs = self.llm.generate(prompts, params)
        return [[c.text for c in o.outputs] for o in outputs]

    def close(self) -> None:
        # Free GPU memory before the next stage (SFT) takes the card.
        del self.llm
        import gc

        gc.collect()
