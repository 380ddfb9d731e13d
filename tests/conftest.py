"""Fixtures of every tier: the local cluster, a namespace per test, Redis, the operator.

Servers are real: the cluster is hack/cluster's (started once per session, reused when it is
already running), Redis is Debian's redis-server.  A failing test gets the tail of the logs of
whatever it used attached to its report.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import hypothesis
import pytest
import redis.asyncio as aioredis

from support import cluster as local_cluster
from support import operator as operator_process
from support import redis_server
from support.cluster import REPO, Cluster, docker_engine_missing

# The suite shares two cores with an API server, etcd and Redis: a single slow example says
# nothing about the code under test, so hypothesis judges results, not timings.
hypothesis.settings.register_profile("treadle", deadline=None)
hypothesis.settings.load_profile("treadle")


@pytest.fixture(autouse=True)
def _event_loop_for_sync_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """looptime's hook asks the policy for a loop even around sync tests, which creates one that
    nobody closes (a ResourceWarning, an error here); give sync tests a loop and close it."""
    if inspect.iscoroutinefunction(request.function):
        yield
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        choices=("local", "kind"),
        default="local",
        help="where integration and end-to-end tests run: the local cluster built from source "
        "(default, what CI runs) or kind (needs a Docker engine)",
    )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if request.config.getoption("cluster") == "kind":
        yield from _kind_cluster(request)
        return
    running, started = local_cluster.start()
    os.environ["KUBECONFIG"] = str(running.kubeconfig)
    yield running
    if started and not os.environ.get("TREADLE_KEEP_CLUSTER"):
        local_cluster.stop()


def _kind_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A kind cluster (pytest-kind) with the Treadle image built and loaded into it."""
    missing = docker_engine_missing()
    if missing is not None:
        pytest.skip(f"--cluster=kind needs a Docker engine, and there is none here: {missing}")
    from pytest_kind import KindCluster

    kind = KindCluster("treadle-e2e")
    kind.create()
    subprocess.run(["docker", "build", "-t", "treadle:dev", str(REPO)], check=True)
    kind.load_docker_image("treadle:dev")
    os.environ["KUBECONFIG"] = str(kind.kubeconfig_path)
    yield Cluster(kind.kubeconfig_path)
    if not os.environ.get("TREADLE_KEEP_CLUSTER"):
        kind.delete()


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    # kubectl wait fails at once, rather than waiting, on a CRD whose status has no conditions
    # yet (just made): ask again until the API server has set them.
    deadline = time.monotonic() + 60
    while True:
        waited = cluster.kubectl(
            "wait", "--for=condition=established", "--timeout=60s",
            "crd/workflows.treadle.dev", "crd/syncjobs.treadle.dev",
            "crd/workflowtemplates.treadle.dev", "crd/workerpools.treadle.dev", check=False,
        )  # fmt: skip
        if waited.returncode == 0:
            return cluster
        if time.monotonic() > deadline:
            raise AssertionError(f"the CRDs were never established: {waited.stderr}")
        time.sleep(0.5)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "wait",
        "--for=create",  # the controller manager makes it a moment after the namespace
        "--timeout=60s",
        "serviceaccount/default",
        "-n",
        name,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def redis_server_process(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster
) -> Iterator[redis_server.RedisServer]:
    """The session's Redis; worker pods of the local cluster reach it at its host address."""
    server = redis_server.start(tmp_path_factory.mktemp("redis"), local_cluster.host_address())
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server_process: redis_server.RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's Redis with an empty database."""
    client = aioredis.Redis.from_url(redis_server_process.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def operator(
    crds: Cluster,
    redis_server_process: redis_server.RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[operator_process.OperatorProcess]:
    """The operator as a subprocess against the local cluster, shared by the session's tests
    (each works in its own namespace)."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = operator_process.start(crds, log, redis_server_process.operator_url)
    yield running
    running.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        running = funcargs.get("operator")
        if isinstance(running, operator_process.OperatorProcess):
            report.sections.append(("operator log", running.log_tail()))
        if "cluster" in funcargs or "crds" in funcargs or "namespace" in funcargs:
            agent_log = local_cluster.state_dir() / "logs" / "node-agent.log"
            if agent_log.exists():
                report.sections.append(
                    ("node agent log", agent_log.read_text(errors="replace")[-6000:])
                )
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks tests by their tier folder, so `-m "not e2e"` works."""
    for item in items:
        for tier in ("integration", "e2e"):
            if f"/tests/{tier}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, tier))
