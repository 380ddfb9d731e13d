"""The worker runtime: the supervised loop every long-running part of Treadle runs on.

An `Action` does one unit of work and returns a `Directive`: proceed (run again now), idle
(wait for a `Notify`), or sleep(seconds).  A `Loop` runs it with `Pacing`, a `Bulkhead`
(a concurrency limit shared with other loops, and backoff after errors that resets on success)
and `Listener`s, survives the action's exceptions (`PanicPolicy`), and stops promptly on its
`CancelToken`.  A `TaskSet` supervises named loops and shuts them down gracefully.  See
docs/runtime.md.
"""

from treadle.runtime.bulkheads import Backoff, Bulkhead
from treadle.runtime.cancellation import CancelToken, checkpoint
from treadle.runtime.directives import Directive, Next
from treadle.runtime.listeners import Listener, LoggingListener, MetricsListener
from treadle.runtime.loops import Action, Loop, PanicPolicy
from treadle.runtime.notifiers import Notify, poke, poker, wait_any
from treadle.runtime.pacing import Pacing
from treadle.runtime.tasksets import Crash, TaskSet

__all__ = [
    "Action",
    "Backoff",
    "Bulkhead",
    "CancelToken",
    "Crash",
    "Directive",
    "Listener",
    "LoggingListener",
    "Loop",
    "MetricsListener",
    "Next",
    "Notify",
    "Pacing",
    "PanicPolicy",
    "TaskSet",
    "checkpoint",
    "poke",
    "poker",
    "wait_any",
]
