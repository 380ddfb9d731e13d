"""Status writes of Treadle's objects: merge patches of the status subresource.  Apart from the
other API calls so that an import contract can say who writes status: the appliers of
controllers/ (wfapply, syncapply) and the pool keeper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType

from treadle.services.kube import Workflow


async def patch_workflow_status(
    api: AsyncClient, namespace: str, name: str, status: Mapping[str, Any]
) -> bool:
    """Merge-patches a workflow's status; False when the workflow is gone."""
    return await patch_status(api, Workflow, namespace, name, status)


async def patch_status(
    api: AsyncClient, resource: Any, namespace: str, name: str, status: Mapping[str, Any]
) -> bool:
    """Merge-patches the status of a Treadle object; False when it is gone."""
    try:
        await api.patch(
            resource.Status,
            name,
            {"status": dict(status)},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
    except ApiError as error:
        if error.status.code == 404:
            return False
        raise
    return True
