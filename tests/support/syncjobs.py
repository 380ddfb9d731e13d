"""Reading a SyncJob's state from the local cluster, as the e2e tests wait on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from support.cluster import Cluster


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.get("sj", name, namespace).get("status") or {})


def eventually(
    check: Callable[[], Any], what: str, timeout_seconds: float = 60, every_seconds: float = 0.25
) -> Any:
    """Polls the API server until `check` returns something truthy."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(every_seconds)


def reasons(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return [f"{e['reason']}: {e['message']}" for e in cluster.events(namespace, name)]
