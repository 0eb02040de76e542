"""LaTeX answer equivalence through math-verify, safe in any thread.

math-verify bounds parsing and comparison with signal.alarm, which raises outside the main
thread. In the main thread we keep its timeouts; elsewhere (thread workers) we pass None, which
disables them: a pathological expression can then take long, but never fails the worker.
"""
from __future__ import annotations

import functools
import threading

TIMEOUT_S = 5


def _timeout() -> int | None:
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=4096)
def parse_answer(answer: str, timeout: int | None) -> tuple:
    from math_verify import parse

    # Wrapping in \boxed{} makes math-verify read the whole string as one answer.
    return tuple(parse(f"\\boxed{{{answer}}}", parsing_timeout=timeout))


def math_equal(extracted: str, gold: str) -> bool:
    from math_verify import verify

    timeout = _timeout()
    gold_parsed, pred_parsed = parse_answer(gold, timeout), parse_answer(extracted, timeout)
    return bool(gold_parsed and pred_parsed) and verify(
        list(gold_parsed), list(pred_parsed), timeout_seconds=timeout
    )
