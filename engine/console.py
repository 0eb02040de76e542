"""The engine's console (stdout, stderr) is only an echo: its record is the run's log file. A
console that goes away (a reader that closed its pipe: EPIPE; a dropped terminal: EIO) stops the
echo and nothing else."""
from __future__ import annotations

import errno
import logging
import os
import sys

GONE = (errno.EPIPE, errno.EIO)


def is_gone(exc: BaseException | None) -> bool:
    return isinstance(exc, OSError) and exc.errno in GONE


def silence(stream) -> None:
    """Point the stream's file descriptor at /dev/null, so every later writer (warnings, other
    loggers, a traceback) writes nowhere instead of failing."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


class ConsoleEcho(logging.StreamHandler):
    """Echoes a logger to stderr; when stderr has gone away it silences it and leaves the logger."""

    def __init__(self, logger: logging.Logger):
        super().__init__()
        self.logger = logger

    def handleError(self, record: logging.LogRecord) -> None:
        if is_gone(sys.exc_info()[1]):
            self.logger.removeHandler(self)
            silence(self.stream)
        else:
            super().handleError(record)


def say(text: str, stream=None) -> None:
    """print() to a console that may have gone away."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except OSError as exc:
        if not is_gone(exc):
            raise
        silence(stream)
