"""Circuit breakers and token buckets shared by the workers of one namespace, kept in Redis.

The state machines are treadle.core.breakers; Lua scripts (treadle.services.scripts) run them
atomically in Redis so that all workers of all pods of a namespace see one breaker and one
bucket per target (the namespace is the tenant boundary: another tenant's failures never open
yours, and its workers' Redis users cannot reach them).  Times come from the Redis server's
clock (one clock for every worker) unless a test passes its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from treadle.services import scripts
from treadle.services.keys import breaker_hash, bucket_hash

STATE_TTL_SECONDS = 86400


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int
    open_seconds: float


@dataclass(frozen=True)
class RateSettings:
    per_second: float
    burst: int


class Guards:
    """Breakers and buckets by namespace and target name."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._admit = scripts.Bound(scripts.BREAKER_ADMIT, client)
        self._record = scripts.Bound(scripts.BREAKER_RECORD, client)
        self._take = scripts.Bound(scripts.BUCKET_TAKE, client)

    async def admit(
        self, namespace: str, target: str, settings: BreakerSettings, now: float | None = None
    ) -> bool:
        """May a call go to `target` now?  (Counts a half-open trial when it lets one through.)"""
        allowed = await self._admit(
            keys={"breaker": breaker_hash(namespace, target)},
            args={
                "now": _now(now),
                "open_seconds": settings.open_seconds,
                "ttl_seconds": STATE_TTL_SECONDS,
            },
        )
        return bool(allowed == 1)

    async def record(
        self,
        namespace: str,
        target: str,
        succeeded: bool,
        settings: BreakerSettings,
        now: float | None = None,
    ) -> int:
        failures = await self._record(
            keys={"breaker": breaker_hash(namespace, target)},
            args={
                "now": _now(now),
                "succeeded": int(succeeded),
                "failure_threshold": settings.failure_threshold,
                "ttl_seconds": STATE_TTL_SECONDS,
            },
        )
        return int(failures)

    async def take(
        self, namespace: str, target: str, settings: RateSettings, now: float | None = None
    ) -> float:
        """Takes a token: 0 when the call may go now, else the seconds to wait and ask again."""
        wait = await self._take(
            keys={"bucket": bucket_hash(namespace, target)},
            args={
                "now": _now(now),
                "per_second": settings.per_second,
                "burst": settings.burst,
                "ttl_seconds": STATE_TTL_SECONDS,
            },
        )
        return float(wait)


def _now(now: float | None) -> str:
    """The scripts' `now`: '' for the Redis server's clock (one clock for every worker)."""
    return "" if now is None else repr(now)
