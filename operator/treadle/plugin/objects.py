"""Reading and annotating Treadle's objects from the plugin."""

from __future__ import annotations

import time
from typing import Any

from lightkube import ApiError, Client
from lightkube.types import PatchType

from treadle.plugin.output import Failure

WAIT_POLL_SECONDS = 0.5


def get(client: Client, resource: Any, what: str, name: str) -> Any:
    """The object, or a Failure saying it is not there (`what`: "workflow", "sync job")."""
    try:
        return client.get(resource, name)
    except ApiError as error:
        if error.status.code == 404:
            where = f"namespace {client.namespace!r}"
            raise Failure(f"{what} {name!r} not found in {where}") from None
        raise


def ask(
    client: Client,
    resource: Any,
    what: str,
    name: str,
    annotation: str,
    value: str,
    timeout_seconds: float,
) -> Any | None:
    """Sets `annotation` (a request to the operator) and waits until the operator removed it,
    which it does once it acted; returns the object then (None when not waiting)."""
    client.patch(
        resource,
        name,
        {"metadata": {"annotations": {annotation: value}}},
        patch_type=PatchType.MERGE,
    )
    if timeout_seconds <= 0:
        return None
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        current = get(client, resource, what, name)
        if annotation not in (current["metadata"].get("annotations") or {}):
            return current
        time.sleep(WAIT_POLL_SECONDS)
    raise Failure(
        f"the operator did not act within {timeout_seconds:g} s "
        f"(annotation {annotation}={value} is still set; is the operator running?)"
    )
