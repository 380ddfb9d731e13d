"""Kubernetes Events about Treadle's objects, so `kubectl describe` tells their story.

Posting an Event is best effort: a failure is logged and never stops the work it describes.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

log = logging.getLogger(__name__)

COMPONENT = "treadle-operator"
MESSAGE_LIMIT = 1024


def reference(
    *, api_version: str, kind: str, name: str, namespace: str, uid: str | None = None
) -> ObjectReference:
    return ObjectReference(
        apiVersion=api_version, kind=kind, name=name, namespace=namespace, uid=uid
    )


async def post(
    api: AsyncClient, about: ObjectReference, type: str, reason: str, message: str
) -> None:
    now = datetime.now(UTC)
    event = Event(
        metadata=ObjectMeta(generateName=f"{about.name}.", namespace=about.namespace),
        involvedObject=about,
        type=type,
        reason=reason,
        message=message[:MESSAGE_LIMIT],
        source=EventSource(component=COMPONENT),
        reportingComponent=f"treadle.dev/{COMPONENT}",
        reportingInstance=socket.gethostname(),
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )
    try:
        await api.create(event)
    except Exception:
        log.warning("could not post event %s on %s/%s", reason, about.namespace, about.name)
