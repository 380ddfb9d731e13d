"""The operator's log API against the local API server and a real Redis: it believes the user
headers of the API server's front proxy alone, asks the cluster whether that user may read the
logs, and says so when Redis is away."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support import redis_server
from support.cluster import Cluster
from support.redis_server import RedisServer, free_port
from treadle.controllers import logapi
from treadle.core.identity import dedicated_pool
from treadle.services import keys, kube, queues
from treadle.services.results import ResultStream

LOG = "first line\nsecond line\n"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, which it may stop."""
    server = redis_server.start(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
async def served(
    crds: Cluster, own_redis: RedisServer, namespace: str
) -> AsyncIterator[tuple[str, RedisServer]]:
    """The log API on a free loopback port, and the Redis it reads; one workflow `logged` in
    `namespace`, whose task `t` ran once and left a log."""
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "logged"},
        "spec": {"tasks": [{"name": "t", "command": {"args": ["true"]}}]},
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    status = {"status": {"phase": "Succeeded", "runGeneration": 1,
                         "tasks": {"t": {"phase": "Succeeded", "attempts": 1}}}}  # fmt: skip
    crds.kubectl(
        "patch", "twf/logged", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    uid = crds.get("twf", "logged", namespace)["metadata"]["uid"]
    client = queues.connect(own_redis.url)
    own_pool = dedicated_pool(uid)
    await client.set(keys.log_key(own_pool, uid, "t", None, 1, 1), LOG)
    api = kube.client()
    port = free_port()
    running = await logapi.serve(api, ResultStream(client, "t"), f"127.0.0.1:{port}", ("x", "y"))
    assert running is not None  # the local API server forwards to aggregated APIs
    try:
        yield (
            f"https://127.0.0.1:{port}{logapi.PREFIX}/namespaces/{namespace}/workflowlogs",
            own_redis,
        )
    finally:
        await running.close()
        await client.aclose()
        await api.close()


def front_proxy(crds: Cluster) -> ssl.SSLContext:
    """A TLS client presenting the local API server's front-proxy certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(crds.pki("front-proxy-client.crt"), crds.pki("front-proxy-client.key"))
    return context


async def get(
    url: str, context: ssl.SSLContext, user: str, *groups: str
) -> tuple[int, dict[str, Any]]:
    headers = [("X-Remote-User", user), *(("X-Remote-Group", g) for g in groups)]
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context, headers=headers) as reply,
    ):
        return reply.status, await reply.json()


async def test_the_front_proxys_user_reads_what_rbac_lets_them(
    crds: Cluster, served: tuple[str, RedisServer]
) -> None:
    base, _ = served
    context = front_proxy(crds)
    code, answer = await get(f"{base}/logged?task=t", context, "admin", "system:masters")
    assert code == 200
    assert [(a["task"], a["attempt"], a["log"]) for a in answer["attempts"]] == [("t", 1, LOG)]
    code, refused = await get(f"{base}/logged", context, "nobody", "system:authenticated")
    assert code == 403
    assert 'User "nobody" cannot get resource "workflowlogs"' in refused["message"]
    code, missing = await get(f"{base}/ghost", context, "admin", "system:masters")
    assert (code, missing["reason"]) == (404, "NotFound")
    code, bad = await get(f"{base}/logged?item=-1", context, "admin", "system:masters")
    assert (code, bad["reason"]) == (400, "BadRequest")


async def test_a_caller_without_the_front_proxys_certificate_is_nobody(
    crds: Cluster, served: tuple[str, RedisServer]
) -> None:
    base, _ = served
    anonymous = ssl.create_default_context()
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    code, answer = await get(f"{base}/logged", anonymous, "admin", "system:masters")
    assert code == 401
    assert "front proxy" in answer["message"]


async def test_redis_away_is_said_not_hidden(
    crds: Cluster, served: tuple[str, RedisServer]
) -> None:
    base, redis = served
    redis.stop()
    code, answer = await get(f"{base}/logged", front_proxy(crds), "admin", "system:masters")
    assert (code, answer.get("reason")) == (503, "ServiceUnavailable"), answer
    assert "cannot read logs now" in answer["message"]
