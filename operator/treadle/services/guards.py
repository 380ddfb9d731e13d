"""Circuit breakers and token buckets shared by the workers of one namespace, kept in Redis.

The state machines are treadle.core.breakers; the Lua scripts here run them atomically in Redis
so that all workers of all pods of a namespace see one breaker and one bucket per target (the
namespace is the tenant boundary: another tenant's failures never open yours, and its workers'
Redis users cannot reach them).  Times come from the
Redis server's clock (one clock for every worker) unless a test passes its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from treadle.services.keys import breaker_hash, bucket_hash

STATE_TTL_SECONDS = 86400

_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
"""

# ARGV: now ('' for the server's clock), open_seconds.  Returns 1: call allowed, 0: fail fast.
ADMIT = (
    _NOW
    + """
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if not opened then return 1 end
local open = tonumber(ARGV[2])
if now - tonumber(opened) < open then return 0 end
local trial = redis.call('HGET', KEYS[1], 'trial_started_at')
if trial and now - tonumber(trial) < open then return 0 end
redis.call('HSET', KEYS[1], 'trial_started_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

# ARGV: now, succeeded (1 or 0), failure threshold, ttl.  Returns the consecutive failures.
RECORD = (
    _NOW
    + """
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  return 0
end
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0') + 1
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if opened or failures >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'failures', failures, 'opened_at', tostring(now))
else
  redis.call('HSET', KEYS[1], 'failures', failures)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return failures
"""
)

# ARGV: now, per_second, burst, ttl.  Returns the seconds to wait (as a string); "0": go.
TAKE = (
    _NOW
    + """
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated_at') or now)
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return tostring(wait)
"""
)


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int
    open_seconds: float


@dataclass(frozen=True)
class RateSettings:
    per_second: float
    burst: int


SCRIPTS = (ADMIT, RECORD, TAKE)


class Guards:
    """Breakers and buckets by namespace and target name."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._admit = client.register_script(ADMIT)
        self._record = client.register_script(RECORD)
        self._take = client.register_script(TAKE)

    async def admit(
        self, namespace: str, target: str, settings: BreakerSettings, now: float | None = None
    ) -> bool:
        """May a call go to `target` now?  (Counts a half-open trial when it lets one through.)"""
        allowed = await self._admit(
            keys=[breaker_hash(namespace, target)],
            args=["" if now is None else repr(now), settings.open_seconds, STATE_TTL_SECONDS],
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
            keys=[breaker_hash(namespace, target)],
            args=[
                "" if now is None else repr(now),
                int(succeeded),
                settings.failure_threshold,
                STATE_TTL_SECONDS,
            ],
        )
        return int(failures)

    async def take(
        self, namespace: str, target: str, settings: RateSettings, now: float | None = None
    ) -> float:
        """Takes a token: 0 when the call may go now, else the seconds to wait and ask again."""
        wait = await self._take(
            keys=[bucket_hash(namespace, target)],
            args=[
                "" if now is None else repr(now),
                settings.per_second,
                settings.burst,
                STATE_TTL_SECONDS,
            ],
        )
        return float(wait)
