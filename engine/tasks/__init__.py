"""Task registry: a name -> a factory of `Task`. See `engine.tasks.base` for the interface."""
from __future__ import annotations

from typing import Callable

from ..errors import UserError
from .arith import ARITH_TASKS
from .base import Example, Task

REGISTRY: dict[str, Callable[[], Task]] = {**ARITH_TASKS}


def task_names() -> list[str]:
    return sorted(REGISTRY)


def get_task(name: str) -> Task:
    try:
        return REGISTRY[name]()
    except KeyError:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}") from None


__all__ = ["Example", "Task", "REGISTRY", "get_task", "task_names"]
