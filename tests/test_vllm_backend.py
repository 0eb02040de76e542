"""The vLLM backend, which cannot run here: every keyword it passes to `LLM(...)`, `LLM.generate`,
`LLM.chat` and `SamplingParams(...)` is checked against the source inside a vLLM wheel (parsed with
ast, nothing imported), and its child process reports a failure to start and goes away.

The wheel: $IMM_VLLM_WHEEL, else /tmp/vllm-wheel/vllm-*.whl
(`pip download --no-deps vllm -d /tmp/vllm-wheel`); the checks skip without one."""
from __future__ import annotations

import ast
import glob
import importlib.util
import os
import zipfile
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parent.parent / "engine" / "models" / "vllm_backend.py"
WHEELS = ([os.environ["IMM_VLLM_WHEEL"]] if os.environ.get("IMM_VLLM_WHEEL")
          else sorted(glob.glob("/tmp/vllm-wheel/vllm-*.whl")))
needs_wheel = pytest.mark.skipif(not WHEELS, reason="no vLLM wheel (set IMM_VLLM_WHEEL or see this file's docstring)")


def backend_calls(source: str) -> dict[str, set[str]]:
    """Keywords the backend passes: {"LLM": ..., "SamplingParams": ..., "generate": ..., "chat": ...}."""
    calls: dict[str, set[str]] = {"LLM": set(), "SamplingParams": set(), "generate": set(), "chat": set()}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) and
                                                     isinstance(f.value, ast.Name) and f.value.id == "llm" else None)
        if name in calls:
            assert all(k.arg for k in node.keywords), f"{name}(**...) cannot be checked"
            calls[name] |= {k.arg for k in node.keywords}
    return calls


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def _parameters(cls: ast.ClassDef, method: str) -> tuple[set[str], bool]:
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method)
    a = fn.args
    return {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} - {"self"}, a.kwarg is not None


def _fields(cls: ast.ClassDef) -> set[str]:
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def accepted(wheel: str) -> dict[str, set[str]]:
    """What each callee accepts in the wheel's source. LLM.__init__ hands its **kwargs to EngineArgs,
    so its fields count too; SamplingParams is a msgspec Struct: its fields are its keywords."""
    with zipfile.ZipFile(wheel) as z:
        def tree(path):
            return ast.parse(z.read(path).decode())

        llm = _class(tree("vllm/entrypoints/llm.py"), "LLM")
        engine_args = _fields(_class(tree("vllm/engine/arg_utils.py"), "EngineArgs"))
        sampling = _class(tree("vllm/sampling_params.py"), "SamplingParams")
    out = {}
    for method, key in (("__init__", "LLM"), ("generate", "generate"), ("chat", "chat")):
        names, kwargs = _parameters(llm, method)
        out[key] = names | (engine_args if kwargs and key == "LLM" else set())
    assert not any(isinstance(n, ast.FunctionDef) and n.name == "__init__" for n in sampling.body)
    out["SamplingParams"] = _fields(sampling)
    return out


def unknown(calls: dict[str, set[str]], allowed: dict[str, set[str]]) -> dict[str, set[str]]:
    return {name: bad for name, kws in calls.items() if (bad := kws - allowed[name])}


@needs_wheel
def test_every_keyword_the_backend_passes_is_accepted_by_the_vllm_wheel():
    calls = backend_calls(BACKEND.read_text())
    # the parse found the real calls (not a vacuous pass)
    assert {"model", "dtype", "seed", "generation_config", "tensor_parallel_size"} <= calls["LLM"]
    assert {"n", "temperature", "top_p", "max_tokens", "stop", "stop_token_ids"} <= calls["SamplingParams"]
    assert "sampling_params" in calls["generate"] and "sampling_params" in calls["chat"]
    assert unknown(calls, accepted(WHEELS[-1])) == {}, Path(WHEELS[-1]).name


@needs_wheel
def test_a_keyword_vllm_does_not_accept_is_caught():
    source = BACKEND.read_text().replace("top_k=-1,", "top_k=-1, best_of=2,")
    source = source.replace("use_tqdm=False)\n            else", "use_tqdm=False, max_tokens=9)\n            else")
    assert unknown(backend_calls(source), accepted(WHEELS[-1])) == {"SamplingParams": {"best_of"},
                                                                    "chat": {"max_tokens"}}


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_the_vllm_process_reports_a_failed_start_and_ends(base_models):
    import torch

    from engine.models.vllm_backend import VLLMGenerator

    with pytest.raises(RuntimeError, match="No module named 'vllm'") as failed:
        VLLMGenerator(base_models / "tiny-arith-v1", torch.float32)
    assert "vLLM failed in its process" in str(failed.value)
    import multiprocessing

    assert multiprocessing.active_children() == []
