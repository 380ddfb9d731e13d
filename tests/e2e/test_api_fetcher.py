"""The seed's parallel API fetcher against a local HTTP server: an authenticated list call, a
fan-out of one call per user, a python fan-in, and a command that reports the merge."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from support.cluster import REPO, Cluster
from support.http import JsonHandler, serving
from support.operator import OperatorProcess
from support.redis_server import RedisServer

TOKEN = "s3cret-token"


class Api(JsonHandler):
    seen_keys: list[str] = []

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.reply(401, {"error": "unauthorized"})
            return
        Api.seen_keys.append(self.headers.get("Idempotency-Key", ""))
        if self.path == "/users":
            self.reply(200, {"ids": [3, 1, 2]})
        elif self.path.startswith("/users/"):
            user = int(self.path.rsplit("/", 1)[1])
            self.reply(200, {"id": user, "name": f"user-{user}"})
        else:
            self.reply(404, {"error": "no such path"})


@pytest.fixture
def api(cluster: Cluster) -> Iterator[str]:
    with serving(Api) as url:
        yield url


def test_the_parallel_api_fetcher_fans_out_fans_in_and_reports(
    crds: Cluster,
    operator: OperatorProcess,
    namespace: str,
    api: str,
    redis_server_process: RedisServer,
) -> None:
    crds.kubectl(
        "create",
        "secret",
        "generic",
        "api",
        "-n",
        namespace,
        f"--from-literal=token=Bearer {TOKEN}",
    )
    auth = [
        {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    ]
    workflow = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "parallel-api-fetcher"},
        "spec": {
            "params": {"baseUrl": api},
            "concurrency": 8,
            "workers": {
                "replicas": 2,
                "env": [{"name": "PYTHONPATH", "value": str(REPO / "tests")}],
            },
            "tasks": [
                {
                    "name": "list-users",
                    "http": {"url": "{{ params.baseUrl }}/users", "headers": auth},
                },
                {
                    "name": "fetch-user",
                    "dependsOn": ["list-users"],
                    "forEach": "{{ tasks['list-users'].output.ids }}",
                    "http": {"url": "{{ params.baseUrl }}/users/{{ item }}", "headers": auth},
                },
                {
                    "name": "merge",
                    "dependsOn": ["fetch-user"],
                    "python": {
                        "callable": "support.tasks:merge",
                        "kwargs": {"users": "{{ tasks['fetch-user'].outputs }}"},
                    },
                },
                {
                    "name": "notify",
                    "dependsOn": ["merge"],
                    "command": {"args": ["sh", "-c", "echo merged {{ tasks.merge.output.count }}"]},
                },
            ],
        },
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(workflow))
    crds.wait("twf/parallel-api-fetcher", namespace, "condition=Ready", timeout_seconds=180)
    status = crds.get("twf", "parallel-api-fetcher", namespace)["status"]
    assert status["tasks"]["merge"]["output"] == {
        "count": 3,
        "names": ["user-3", "user-1", "user-2"],
    }
    assert status["tasks"]["notify"]["output"] == "merged 3"
    assert status["progress"] == "6/6"
    uid = crds.get("twf", "parallel-api-fetcher", namespace)["metadata"]["uid"]
    assert sorted(Api.seen_keys) == sorted(
        [f"{uid}/g1/list-users/-"] + [f"{uid}/g1/fetch-user/{i}" for i in range(3)]
    )
    # The token never shows in status, Events, the operator's log, or the workers' logs.
    assert TOKEN not in json.dumps(status)
    assert TOKEN not in json.dumps(crds.events(namespace, "parallel-api-fetcher"))
    operator_log = operator.log.read_text(errors="replace")
    assert TOKEN not in operator_log
    assert redis_server_process.password not in operator_log
    for index in range(2):
        logs = crds.kubectl(
            "logs", f"parallel-api-fetcher-worker-{index}", "-n", namespace, check=False
        ).stdout
        assert TOKEN not in logs
