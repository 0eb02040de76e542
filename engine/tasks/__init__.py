"""Task registry: a name -> a factory of `Task`. See `engine.tasks.base` for the interface.

Built-in: the arithmetic tasks of the embedded default (arith_*) and the real benchmarks gsm8k,
math, svamp, asdiv, mawps, sat_math, mmlu_stem, aqua (`engine.tasks.builtin_benchmarks`). `get_task(name,
spec)` also builds a task from a preset's `[tasks.NAME]` table: a custom task over a user's JSONL,
or a built-in reading its data from elsewhere (`engine.tasks.custom` documents the table).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import ConfigError, UserError
from .arith import ARITH_TASKS
from .base import Example, Task
from .builtin_benchmarks import BENCHMARK_TASKS
from .custom import TaskSpec, custom_task, relocate

REGISTRY: dict[str, Callable[[], Task]] = {**ARITH_TASKS, **BENCHMARK_TASKS}


def task_names() -> list[str]:
    return sorted(REGISTRY)


def get_task(name: str, spec: Mapping[str, Any] | TaskSpec | None = None) -> Task:
    if name in ARITH_TASKS and spec:
        raise ConfigError(f"tasks.{name}", dict(spec) if isinstance(spec, Mapping) else spec,
                          "nothing: arithmetic tasks are generated, not read")
    if name in REGISTRY:
        task = REGISTRY[name]()
        return relocate(task, spec) if spec else task  # type: ignore[arg-type]  # a registered benchmark reads records
    if spec is not None:
        return custom_task(name, spec)
    raise UserError(
        f"unknown task {name!r}; known tasks: {', '.join(task_names())}; "
        f"or describe your own data in a [tasks.{name}] table (path, kind, question, answer)"
    )


__all__ = ["Example", "Task", "TaskSpec", "REGISTRY", "get_task", "task_names"]
