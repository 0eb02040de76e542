"""vLLM generation backend, written against vLLM's documented offline API (`LLM`, `LLM.generate` /
`LLM.chat` with `SamplingParams`). NOT run here: vLLM cannot be installed on the CPU machines or
the lent GPU machines (see README); tests/test_vllm_backend.py checks every keyword it passes
against a vLLM wheel's source. Selected with `generation.backend = "vllm"`.

generation.vllm_tensor_parallel > 1 shards a model too large for one GPU over that many GPUs
(vLLM's tensor_parallel_size); the generation workers (engine.models.worker_pool) add data
parallelism over the GPU groups that remain, one vLLM engine per group.

vLLM runs in a child process (multiprocessing, spawn): close() ends that process, so all the GPU
memory vLLM took (its KV cache reserves most of the card) is returned before the next stage (SFT)
starts, whatever vLLM's own teardown leaves behind."""
from __future__ import annotations

import multiprocessing
from typing import Any
import os
import traceback

from .generation import eos_token_ids, sampling_settings


class VLLMGenerator:
    def __init__(self, path, dtype, seed: int = 0, trust_remote_code: bool = False, tensor_parallel: int = 1):
        from .loading import load_tokenizer

        self.eos_ids = eos_token_ids(path, load_tokenizer(path, trust_remote_code=trust_remote_code), trust_remote_code)
        self._conn, child = multiprocessing.get_context("spawn").Pipe()
        self._process: Any = multiprocessing.get_context("spawn").Process(
            target=serve, args=(child, str(path), str(dtype).removeprefix("torch."), seed, trust_remote_code, tensor_parallel,
                                      os.getpid()), daemon=True)
        self._process.start()
        child.close()
        self._answer()  # vLLM is up (or its error is raised here)

    def _answer(self):
        try:
            status, value = self._conn.recv()
        except EOFError:
            self.close()
            raise RuntimeError("the vLLM process ended without an answer (see its output above)") from None
        if status == "error":
            self.close()
            raise RuntimeError(f"vLLM failed in its process:\n{value}")
        return value

    def generate(self, prompts, temperature, n, max_new_tokens, stop=(), on_batch=None, seed=None):
        s = sampling_settings(temperature)
        request = {"n": n, "temperature": temperature, "top_p": s["top_p"], "repetition_penalty": s["repetition_penalty"],
                   "max_tokens": max_new_tokens, "stop": list(stop) or None, "stop_token_ids": self.eos_ids,
                   "seed": seed}
        self._conn.send((prompts, request))
        texts, tokens = self._answer()
        if on_batch is not None:  # vLLM schedules the whole list itself: one report at the end
            on_batch(len(texts), tokens)
        return texts

    def close(self) -> None:
        """End the vLLM process (its exit frees every byte of GPU memory it held)."""
        if self._process is None:
            return
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
        self._process = None


def serve(conn, path: str, dtype: str, seed: int, trust_remote_code: bool = False, tensor_parallel: int = 1,
          parent: int | None = None) -> None:
    """The child process: build the engine on the first `tensor_parallel` visible GPUs (a
    generation worker's group: engine.models.placement), then answer (prompts, request) messages
    with (completions per prompt, tokens generated) until a None arrives."""
    from .worker_pool import exit_with_parent

    if parent is not None:
        exit_with_parent(parent)
    try:
        from vllm import LLM, SamplingParams

        # generation_config="vllm": vLLM's neutral defaults, not the checkpoint's generation_config.json
        llm = LLM(model=path, dtype=dtype, seed=seed, generation_config="vllm", trust_remote_code=trust_remote_code,
                  tensor_parallel_size=tensor_parallel)
        conn.send(("ok", None))
        while (message := conn.recv()) is not None:
            prompts, r = message
            params = SamplingParams(n=r["n"], temperature=r["temperature"], top_p=r["top_p"], top_k=-1, min_p=0.0,
                                    repetition_penalty=r["repetition_penalty"], presence_penalty=0.0,
                                    frequency_penalty=0.0, max_tokens=r["max_tokens"], stop=r["stop"],
                                    stop_token_ids=r["stop_token_ids"], seed=r["seed"])
            if prompts and not isinstance(prompts[0], str):  # chat messages: rendered with the model's template
                outputs = llm.chat(prompts, sampling_params=params, use_tqdm=False)
            else:
                outputs = llm.generate(prompts, sampling_params=params, use_tqdm=False)
            conn.send(("ok", ([[c.text for c in o.outputs] for o in outputs],
                              sum(len(c.token_ids) for o in outputs for c in o.outputs))))
    except Exception:  # noqa: BLE001  (any failure goes back to the parent, which raises it)
        conn.send(("error", traceback.format_exc()))
