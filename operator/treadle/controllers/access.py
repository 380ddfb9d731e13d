"""The check every spec passes before anything of it runs: may the user who applied it read
what it would use?  (core/access.py says why this is not left to the webhook.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient

from treadle.api import syncjobs
from treadle.core import access
from treadle.services import kube

log = logging.getLogger(__name__)

MAX_REFERENCES = 100
"""Distinct Secrets, ConfigMaps and PVCs one spec may name (each costs a SubjectAccessReview;
its `job` tasks cost one more, for all of them)."""


async def refusals(api: AsyncClient, kind: str, spec: Any, meta: Mapping[str, Any]) -> list[str]:
    """Why the stamped user of this object may not have Treadle use what `spec` names (empty:
    they may).  A Workflow that the operator made as a SyncJob's run is its SyncJob's: that
    job's stamped user is asked."""
    named = access.references(spec)
    if not named:
        return []
    if len(named) > MAX_REFERENCES:
        return [
            f"spec: names {len(named)} Secrets, ConfigMaps and PVCs; at most {MAX_REFERENCES} "
            "may be named"
        ]
    namespace = str(meta.get("namespace") or "")
    who = access.requester(meta.get("annotations"))
    run_of = [o for o in meta.get("ownerReferences") or [] if o.get("kind") == syncjobs.KIND]
    if run_of and who is not None and who.username == await kube.own_username(api):
        who, kind = await _owning_syncjob(api, namespace, run_of), syncjobs.KIND
    if who is None:
        return [access.unstamped(named, kind)]
    problems = []
    for reference in named:
        allowed = await kube.may(
            api,
            who.user_info(),
            namespace=namespace,
            verb=reference.verb,
            group=reference.group,
            resource=reference.resource,
            name=reference.name or None,
        )
        if not allowed:
            problems.append(access.refusal(reference, who, namespace))
    return problems


async def _owning_syncjob(
    api: AsyncClient, namespace: str, owners: list[Mapping[str, Any]]
) -> access.Requester | None:
    """The stamped user of the SyncJob this object is a run of (None: that job is gone)."""
    for owner in owners:
        if not owner.get("name"):
            continue
        job = await kube.get_syncjob(api, namespace, str(owner["name"]))
        if job is not None and (job.get("metadata") or {}).get("uid") == owner.get("uid"):
            return access.requester((job.get("metadata") or {}).get("annotations"))
    return None
