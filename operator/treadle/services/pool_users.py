"""The Redis ACL users of the worker pools.

Every pool's workers reach Redis as their own user (`treadle-pool-<pool>`), allowed only the
pool's keys and its namespace's breakers and buckets (keys.pool_key_patterns), and only the
commands a worker sends.  So the URL in a worker's environment, which any task's code can read,
reads no other pool's tasks or outputs, forges no other pool's results, and can neither flush
Redis, list its keys, nor run a script of its own (a Lua loop would stall Redis for every
tenant): the operator loads Treadle's scripts, the workers may only call them by hash.

A pool's password is derived from the operator's own (an HMAC), so the operator can make the
user again after a restart of Redis (which keeps no ACL users it was not configured with) or of
itself, without storing or reading any password of a pool.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from treadle.services import keys, scripts

log = logging.getLogger(__name__)

WORKER_COMMANDS = (
    "ping",
    "select",
    "xreadgroup",
    "xgroup|create",
    "xadd",
    "xack",
    "xdel",
    "xclaim",
    "xpending",
    "xrange",
    "hexists",
    "hmget",
    "set",
    "incrby",
    "decrby",
    "sadd",
    "expire",
    "evalsha",
    "script|exists",
    # Run only inside Treadle's scripts (Redis checks each call a script makes).
    "hsetnx",
    "hget",
    "hset",
    "del",
    "time",
)
"""What a worker sends: its reads and writes of its pool's streams, the idempotency records
and stored outputs, and Treadle's scripts by hash.  No EVAL, SCRIPT LOAD, KEYS, SCAN, FLUSH*,
CONFIG, ACL, pub/sub or blocking list commands."""

WORKER_SCRIPTS = tuple(script.source for script in scripts.SCRIPTS.values())


class PoolUsersUnavailable(RuntimeError):
    """This Redis cannot give each pool a user of its own (no ACL, or no password)."""


def password(operator_password: str, pool: str) -> str:
    """The pool user's password: an HMAC of the pool name under the operator's password."""
    digest = hmac.new(operator_password.encode(), b"treadle pool\0" + pool.encode(), "sha256")
    return digest.hexdigest()


def worker_url(base_url: str, user: str, secret: str) -> str:
    """`base_url` (the address workers reach Redis at) with this user and password."""
    parts = urlsplit(base_url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    address = host if parts.port is None else f"{host}:{parts.port}"
    credentials = f"{quote(user, safe='')}:{quote(secret, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{credentials}@{address}"))


def operator_password(url: str) -> str | None:
    """The password in the operator's Redis URL, if any."""
    return urlsplit(url).password


def acl_rules(pool: str, namespace: str, secret: str) -> list[str]:
    """The ACL SETUSER rules of one pool's user (from scratch each time: `reset`)."""
    hashed = hashlib.sha256(secret.encode()).hexdigest()
    patterns = [f"~{pattern}" for pattern in keys.pool_key_patterns(pool, namespace)]
    commands = [f"+{command}" for command in WORKER_COMMANDS]
    return ["reset", "on", f"#{hashed}", "resetchannels", *patterns, "-@all", *commands]


async def ensured_url(users: PoolUsers | None, base_url: str, pool: str, namespace: str) -> str:
    """The URL a pool's workers reach Redis at: with pool users, as the pool's own user, made
    (again: Redis keeps none over a restart) first; else `base_url` as it is."""
    if users is None:
        return base_url
    await users.ensure(pool, namespace)
    return worker_url(base_url, keys.pool_user(pool), users.password(pool))


class PoolUsers:
    """Makes and removes pools' Redis users, through the operator's own connection."""

    def __init__(self, client: aioredis.Redis, operator_password: str) -> None:
        self.client = client
        self._operator_password = operator_password
        self._run_id: str | None = None
        self._looked_at = 0.0

    @classmethod
    async def start(cls, client: aioredis.Redis, url: str) -> PoolUsers:
        """Checks that this Redis can keep pools apart: it has ACLs the operator may set, and
        nobody gets in without a password (else a worker could just connect as `default`)."""
        secret = operator_password(url)
        if not secret:
            raise PoolUsersUnavailable(
                "the Redis URL has no password, so a worker could reach Redis as the default "
                "user with every right: give Redis a password (requirepass) and put it in the URL"
            )
        try:
            default: dict[str, Any] | None = await client.acl_getuser("default")
        except ResponseError as error:
            raise PoolUsersUnavailable(
                f"Redis refused ACL GETUSER ({error}): the operator's Redis user must be allowed "
                "ACL commands to give each pool its own user"
            ) from error
        flags = [str(flag) for flag in default.get("flags") or []] if default else []
        if "on" in flags and "nopass" in flags:
            raise PoolUsersUnavailable(
                "Redis lets anyone in as the default user without a password: set requirepass"
            )
        users = cls(client, secret)
        await users.load_scripts()
        return users

    def password(self, pool: str) -> str:
        return password(self._operator_password, pool)

    def twin(self) -> PoolUsers:
        """Another maker on the same connection, with its own watch of Redis restarts (two
        loops asking one `restarted` would each miss what the other saw)."""
        return PoolUsers(self.client, self._operator_password)

    async def restarted(self, *, every_seconds: float = 1.0) -> bool:
        """Whether Redis restarted since the last look (its run id changed), looking at most
        every `every_seconds`: a restarted Redis has forgotten every pool's user and script,
        and the workers wait for them to come back."""
        now = time.monotonic()
        if now - self._looked_at < every_seconds:
            return False
        self._looked_at = now
        try:
            server: dict[str, Any] = await self.client.info("server")
        except RedisConnectionError:  # the connection of before the restart: a new one
            server = await self.client.info("server")
        run_id = str(server.get("run_id") or "")
        before, self._run_id = self._run_id, run_id
        return before is not None and before != run_id

    async def load_scripts(self) -> None:
        """Loads the scripts workers call by hash (Redis forgets them when it restarts)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for script in WORKER_SCRIPTS:
                pipe.script_load(script)
            await pipe.execute()

    async def ensure(self, pool: str, namespace: str) -> None:
        """Makes (or makes again) the pool's user, and the scripts its workers call."""
        rules = acl_rules(pool, namespace, self.password(pool))
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.execute_command("ACL", "SETUSER", keys.pool_user(pool), *rules)
            for script in WORKER_SCRIPTS:
                pipe.script_load(script)
            await pipe.execute()

    async def drop(self, pools: Sequence[str]) -> None:
        """Removes the users of pools that are gone (their workflows finished or went)."""
        if pools:
            await self.client.acl_deluser(*(keys.pool_user(pool) for pool in pools))
