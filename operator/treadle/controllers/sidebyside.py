"""A driver pass's advances, side by side: at most ADVANCE_CONCURRENCY at once, the namespaces
that spent least engine CPU in the last pass first and each at most its share of this one, and
one workflow's failure costing no other its acknowledgements (it backs off on its own)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx2 as httpx
from lightkube import ApiError
from redis.exceptions import ConnectionError as RedisConnectionError

from treadle.controllers.tracked import Tracked
from treadle.core.messages import Report
from treadle.runtime import Backoff

log = logging.getLogger(__name__)

ADVANCE_CONCURRENCY = 32
"""Workflows advanced at once in a pass: a thousand small workflows are not advanced one API
round trip after another, and a pass never asks more of the API server than a few dozen
requests at a time."""
NAMESPACE_CPU_PER_PASS_SECONDS = 0.1
"""Engine CPU (templates rendered mostly) the workflows of one namespace may spend in one
pass; the rest of them are advanced on the next, after the other namespaces had theirs: a
tenant whose templates are costly slows its own workflows, not everyone's."""
FAILURE_BACKOFF = Backoff(initial_seconds=2, max_seconds=60, factor=2, jitter=0)
"""A workflow whose advance failed is advanced again after 2 s, doubled with each failure in a
row up to a minute (a workflow in a namespace being deleted fails for minutes)."""
RETRY_AFTER_FAILURE = timedelta(seconds=FAILURE_BACKOFF.initial_seconds)
_UNJITTERED = random.Random(0)
"""FAILURE_BACKOFF has no jitter: this random source is never drawn from."""


def _away(error: BaseException) -> bool:
    """Whether a failure says a server is away or overloaded (not what one workflow holds)."""
    if isinstance(error, ApiError):
        return error.status.code in (None, 429) or (error.status.code or 0) >= 500
    away = (OSError, ConnectionError, TimeoutError, RedisConnectionError, httpx.TransportError)
    return isinstance(error, away)


Advance = Callable[[Tracked, list[Report], datetime], Awaitable[list[tuple[str, str]]]]


@dataclass
class SideBySide:
    advance: Advance
    """Advances one workflow; returns the results (pool, entry id) safe to acknowledge."""
    workflows: dict[str, Tracked]
    forget: Callable[[str], None]
    exists: Callable[[Tracked], Awaitable[bool]]
    """Whether the workflow still exists (a 404 may be its namespace going)."""
    namespace_cpu: dict[str, float] = field(default_factory=dict)
    """Engine CPU each namespace spent in the last pass (the lightest go first)."""

    async def run(
        self, work: list[tuple[Tracked, list[Report]]], now: datetime
    ) -> tuple[list[tuple[str, str]], BaseException | None]:
        """Advances the workflows side by side, at most ADVANCE_CONCURRENCY talking to the API
        server at once; returns the result ids safe to acknowledge (by pool), and a failure when
        every workflow failed (the API server or Redis is away: the loop backs off).

        A workflow whose advance fails keeps the results it was given, to apply on its next
        advance (due in RETRY_AFTER_FAILURE, doubling): their ids are already among its
        unacknowledged ones, so a later write must not acknowledge them without them."""
        slots = asyncio.Semaphore(ADVANCE_CONCURRENCY)
        spent: dict[str, float] = defaultdict(float)
        # The namespaces that spent least in the last pass go first.
        work = sorted(work, key=lambda item: self.namespace_cpu.get(item[0].who.namespace, 0.0))

        async def one(tracked: Tracked, results: list[Report]) -> list[tuple[str, str]]:
            given = tracked.ledger.take(results)
            namespace = tracked.who.namespace
            async with slots:
                if spent[namespace] >= NAMESPACE_CPU_PER_PASS_SECONDS:
                    # Its namespace had its share of this pass: next pass, results and all.
                    current = self.workflows.get(tracked.who.uid, tracked)
                    current.ledger.keep(given)
                    current.due = now
                    return []
                try:
                    news = tracked.news
                    acked = await self.advance(tracked, given, now)
                    spent[namespace] += tracked.engine_cpu_seconds
                    tracked.failures = 0
                    if tracked.news != news and tracked.who.uid in self.workflows:
                        tracked.due = now  # what the watch told during the advance is seen next
                    return acked
                except ApiError as error:
                    if error.status.code == 404 and not await self.exists(tracked):
                        self.forget(tracked.who.uid)  # it went with its namespace
                        return []
                    self._keep(tracked, given, now, error)
                    raise
                except BaseException as error:
                    self._keep(tracked, given, now, error)
                    raise

        outcomes = await asyncio.gather(*(one(t, r) for t, r in work), return_exceptions=True)
        self.namespace_cpu = dict(spent)
        for outcome in outcomes:
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
        acked = [entry for outcome in outcomes if isinstance(outcome, list) for entry in outcome]
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        # Only a failure that is nobody's doing (the API server or Redis away) fails the pass
        # and backs the loop off; one workflow's own failure is retried on its own schedule
        # (its `due`), even when it was the only work of the pass.
        everyone = bool(failures) and len(failures) == len(outcomes)
        infrastructure = everyone and all(_away(failure) for failure in failures)
        return acked, failures[0] if infrastructure else None

    def _keep(
        self, tracked: Tracked, given: list[Report], now: datetime, error: BaseException
    ) -> None:
        """A failed advance: its results are kept on the workflow as tracked now (a handler
        may have replaced it) and, unless cancelled, it is advanced again soon."""
        current = self.workflows.get(tracked.who.uid, tracked)
        current.ledger.keep(given)
        if isinstance(error, Exception):
            current.failures += 1
            wait = FAILURE_BACKOFF.delay(current.failures, _UNJITTERED)
            current.due = now + timedelta(seconds=wait)
            log.warning(
                "advancing %s/%s failed (%d in a row); again in %g s",
                tracked.who.namespace,
                tracked.who.name,
                current.failures,
                wait,
                exc_info=error,
            )
