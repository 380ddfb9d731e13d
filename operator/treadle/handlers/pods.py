"""Worker pod handlers: a worker pod that dies or is deleted is replaced at once, not at the
driver's next periodic check.

The handlers are coroutines: kopf runs them on the operator's event loop, beside the driver
whose state they change (kopf runs plain functions in threads, which would change that state
while the driver iterates it).
"""

from __future__ import annotations

from typing import Any

import kopf

from treadle.handlers.registry import registry
from treadle.services import kube


@kopf.on.event(
    "v1",
    "pods",
    labels={kube.LABEL_COMPONENT: "worker", kube.LABEL_WORKFLOW: kopf.PRESENT},
    registry=registry,
)
async def worker_pod_changed(
    type: str, body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    driver = getattr(memo, "driver", None)
    gone = type == "DELETED" or meta.get("deletionTimestamp") is not None
    failed = (body.get("status") or {}).get("phase") in ("Failed", "Succeeded")
    if driver is None or not (gone or failed):
        return
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "Workflow":
            driver.worker_pod_gone(owner["uid"])
