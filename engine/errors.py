"""Errors a user can act on. The CLI turns them into one line on stderr and an exit code."""
from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input from the user: nothing has been written. Exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A config field is wrong: names the field path, the value and what is allowed."""

    def __init__(self, path: str, value, allowed: str):
        self.path, self.value, self.allowed = path, value, allowed
        shown = repr(value)
        if len(shown) > 200:  # a pasted file or a huge number: enough to recognise it
            shown = f"{shown[:160]}... ({len(shown)} characters)"
        super().__init__(f"{path}: got {shown}; allowed: {allowed}")
        self.errors = [self]

    @classmethod
    def every(cls, errors: list[ConfigError]) -> ConfigError:
        """Several wrong fields at once: the first names the error, `errors` holds them all and
        the message has a line each."""
        first = errors[0]
        exc = cls(first.path, first.value, first.allowed)
        exc.errors = list(errors)
        exc.args = ("\n".join(str(e) for e in errors),)
        return exc


class RunStateError(Exception):
    """The run cannot do what was asked in its current state (locked, finished, unknown). Exit 3."""

    exit_code = 3


class StopRequested(Exception):
    """The user asked the engine to stop (SIGTERM, `imm stop`); raised at a safe point inside a
    stage, after what the stage finished is saved. The run shows as stopped, the stage pending."""


class DiskFullError(OSError):
    """A write ran out of space (ENOSPC): names the path, about how much it needed and what is free.
    Nothing partial is left behind; `imm resume` redoes the stage once there is room."""

    def __init__(self, path, needed: int, free: int):
        super().__init__(errno.ENOSPC, f"disk full writing {path}: it needs about {_size(needed)}, "
                                       f"{_size(free)} free there; free some space, then `imm resume` the run")
        self.path, self.needed, self.free = path, needed, free

    def __str__(self) -> str:
        return self.strerror or ""


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


class BrokenStateError(RunStateError):
    """The home's database or a run's folder is damaged, or was written by a newer imm; nothing
    was changed. Exit 2: like bad input, a file the user must look at."""

    exit_code = 2
