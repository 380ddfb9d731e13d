"""Where a python task's prints and logging go while it runs: into its attempt's log.

`sys.stdout` and `sys.stderr` are replaced once by writers that send what is written to the log
of the attempt running in the current context (context variables follow asyncio tasks and
`asyncio.to_thread`), and anywhere else to the streams they replaced; a handler on the root
logger does the same for log records, and the worker's own handlers leave those records out.
A thread the task starts itself does not inherit the context: what it prints goes to the
worker's own log."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO

from treadle.core.tasklogs import LogTail

_current: ContextVar[LogTail | None] = ContextVar("treadle_attempt_log", default=None)


class _Routed:
    """A text stream that writes to the current attempt's log, or else where it used to."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback

    def write(self, text: str) -> int:
        log = _current.get()
        if log is None:
            return self._fallback.write(text)
        log.write(text)
        return len(text)

    def flush(self) -> None:
        if _current.get() is None:
            self._fallback.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fallback, name)


class _AttemptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is not None:
            log.write(self.format(record) + "\n")


def _outside_attempts(record: logging.LogRecord) -> bool:
    return _current.get() is None


_installed = False


def install() -> None:
    """Routes log records (once per process) and prints (again whenever something else took
    `sys.stdout` or `sys.stderr` since)."""
    global _installed
    if not isinstance(sys.stdout, _Routed):
        sys.stdout = _Routed(sys.stdout)
    if not isinstance(sys.stderr, _Routed):
        sys.stderr = _Routed(sys.stderr)
    if _installed:
        return
    _installed = True
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(_outside_attempts)
    handler = _AttemptHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


@contextlib.contextmanager
def into(log: LogTail) -> Iterator[None]:
    """What runs in this context (and the tasks and threads it starts with asyncio) writes to
    `log`."""
    install()
    token = _current.set(log)
    try:
        yield
    finally:
        _current.reset(token)
