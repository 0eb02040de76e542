"""The generation backends by name: hf (transformers, engine.models.generation) and vllm
(engine.models.vllm_backend). Both import the shared helpers of generation.py; choosing between
them lives here, so neither module imports the other's."""
from __future__ import annotations

from ..domain import GenerationBackend
from .generation import HFGenerator
from .vllm_backend import VLLMGenerator


def make_generator(backend: GenerationBackend, path, device: str, dtype, batch_size: int, trust_remote_code: bool = False,
                   tensor_parallel: int = 1):
    """The generation backend generation.backend names, loaded with the model at `path`."""
    if backend == GenerationBackend.VLLM:
        return VLLMGenerator(path, dtype, trust_remote_code=trust_remote_code, tensor_parallel=tensor_parallel)
    return HFGenerator(path, device, dtype, batch_size=batch_size, trust_remote_code=trust_remote_code)
