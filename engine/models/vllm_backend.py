"""vLLM generation backend, written against vLLM's documented offline API (`LLM.generate` with
`SamplingParams`). NOT verified here: vLLM could not be installed on the CPU machines or the lent
GPU machines (see README). Selected with `generation.backend = "vllm"`."""
from __future__ import annotations


class VLLMGenerator:
    def __init__(self, path, dtype, seed: int = 0):
        from vllm import LLM

        from .generation import eos_token_ids

        dtype_name = str(dtype).removeprefix("torch.")
        # generation_config="vllm": vLLM's neutral defaults, not the checkpoint's generation_config.json
        self.llm = LLM(model=str(path), dtype=dtype_name, seed=seed, generation_config="vllm")
        self.eos_ids = eos_token_ids(path, self.llm.get_tokenizer())

    def generate(self, prompts, temperature, n, max_new_tokens, stop=(), on_batch=None, seed=None):
        from vllm import SamplingParams

        from .generation import sampling_settings

        s = sampling_settings(temperature)
        params = SamplingParams(n=n, temperature=temperature, top_p=s["top_p"], top_k=-1, min_p=0.0,
                                repetition_penalty=s["repetition_penalty"], presence_penalty=0.0, frequency_penalty=0.0,
                                max_tokens=max_new_tokens, stop=list(stop) or None, stop_token_ids=self.eos_ids,
                                seed=seed)
        if prompts and not isinstance(prompts[0], str):  # chat messages: rendered with the model's template
            outputs = self.llm.chat(prompts, params)
        else:
            outputs = self.llm.generate(prompts, params)
        if on_batch is not None:  # vLLM schedules the whole list itself: one report at the end
            on_batch(len(outputs), sum(len(c.token_ids) for o in outputs for c in o.outputs))
        return [[c.text for c in o.outputs] for o in outputs]

    def close(self) -> None:
        """Free the GPU memory vLLM holds before the next stage (SFT) takes the card: drop the engine,
        tear down vLLM's model-parallel and distributed state (as vLLM's docs show), collect, and
        empty torch's cache."""
        import gc

        import torch

        self.llm = None
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel
        except ImportError:
            pass
        else:
            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
