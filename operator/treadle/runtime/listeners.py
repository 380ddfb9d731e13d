"""Listeners: hooks into a loop's life (start, directive, error, stop), for logs and metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import Counter

from treadle.runtime.directives import Directive

log = logging.getLogger("treadle.runtime")


class Listener(Protocol):
    def on_start(self, loop: str) -> None: ...
    def on_directive(self, loop: str, directive: Directive) -> None: ...
    def on_error(self, loop: str, error: BaseException, backoff_seconds: float) -> None: ...
    def on_stop(self, loop: str) -> None: ...


class LoggingListener:
    """Logs starts, stops and errors (with traceback); directives at debug level."""

    def on_start(self, loop: str) -> None:
        log.info("loop %s started", loop)

    def on_directive(self, loop: str, directive: Directive) -> None:
        log.debug("loop %s: %s %s", loop, directive.next.value, directive.seconds or "")

    def on_error(self, loop: str, error: BaseException, backoff_seconds: float) -> None:
        log.error("loop %s failed; backing off %.3f s", loop, backoff_seconds, exc_info=error)

    def on_stop(self, loop: str) -> None:
        log.info("loop %s stopped", loop)


EXECUTIONS = Counter(
    "treadle_loop_executions_total", "Executions of a runtime loop's action.", ["loop"]
)
ERRORS = Counter("treadle_loop_errors_total", "Errors raised by a runtime loop's action.", ["loop"])
BACKOFF = Counter(
    "treadle_loop_backoff_seconds_total", "Time a runtime loop spent backing off.", ["loop"]
)


class MetricsListener:
    """Counts executions, errors and backoff seconds per loop name (names are bounded)."""

    def on_start(self, loop: str) -> None:
        pass

    def on_directive(self, loop: str, directive: Directive) -> None:
        EXECUTIONS.labels(loop=loop).inc()

    def on_error(self, loop: str, error: BaseException, backoff_seconds: float) -> None:
        EXECUTIONS.labels(loop=loop).inc()
        ERRORS.labels(loop=loop).inc()
        BACKOFF.labels(loop=loop).inc(backoff_seconds)

    def on_stop(self, loop: str) -> None:
        pass


class Listeners:
    """Several listeners as one; a listener that raises is logged, never breaks the loop."""

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self.listeners = list(listeners)

    def _each(self, hook: str, *args: object) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, hook)(*args)
            except Exception:
                log.exception("listener %r failed in %s", listener, hook)

    def on_start(self, loop: str) -> None:
        self._each("on_start", loop)

    def on_directive(self, loop: str, directive: Directive) -> None:
        self._each("on_directive", loop, directive)

    def on_error(self, loop: str, error: BaseException, backoff_seconds: float) -> None:
        self._each("on_error", loop, error, backoff_seconds)

    def on_stop(self, loop: str) -> None:
        self._each("on_stop", loop)


def default_listeners() -> list[Listener]:
    return [LoggingListener(), MetricsListener()]
