"""Kubernetes API calls made outside kopf handlers: the Redis Secret, the worker pods of a
workflow, annotations and Workflows read or deleted (status writes: services/statuses.py).

Worker pods run with the Pod Security Standards *restricted* profile and no service-account
token: they need nothing from the API server, only Redis.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod, Secret
from lightkube.types import PatchType

from treadle.api import GROUP, VERSION, syncjobs, workflows
from treadle.core import delegation, workerpods

Workflow = create_namespaced_resource(GROUP, VERSION, workflows.KIND, workflows.PLURAL)
SyncJob = create_namespaced_resource(GROUP, VERSION, syncjobs.KIND, syncjobs.PLURAL)
WorkflowTemplate = create_namespaced_resource(
    GROUP, VERSION, workflows.TEMPLATE_KIND, workflows.TEMPLATE_PLURAL
)

REDIS_SECRET = workerpods.REDIS_SECRET
LABEL_WORKFLOW = workerpods.WORKFLOW_LABEL
LABEL_COMPONENT = workerpods.COMPONENT_LABEL
SPEC_DIGEST = workerpods.SPEC_DIGEST
"""A worker pod's annotation: a digest of what it was made from."""
FIELD_MANAGER = "treadle-operator"


def client() -> AsyncClient:
    return AsyncClient(field_manager=FIELD_MANAGER)


async def clear_annotation(
    api: AsyncClient, namespace: str, name: str, key: str, value: str, resource: Any = Workflow
) -> str | None:
    """Removes annotation `key` if it still holds `value` (a newer request stays); returns the
    resourceVersion after the change, or None when it changed meanwhile or the object is gone."""
    path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
    try:
        changed = await api.patch(
            resource,
            name,
            [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}],
            namespace=namespace,
            patch_type=PatchType.JSON,
        )
    except ApiError as error:
        if error.status.code in (404, 422):
            return None
        raise
    return changed.metadata.resourceVersion if changed.metadata else None


async def workflow_exists(api: AsyncClient, namespace: str, name: str) -> bool:
    """Whether the workflow is still there (its namespace too)."""
    try:
        await api.get(Workflow, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return False
        raise
    return True


async def _found(api: AsyncClient, kind: Any, namespace: str, name: str) -> Any | None:
    """The object, or None when there is none of that name."""
    try:
        return await api.get(kind, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise


async def template_spec(api: AsyncClient, namespace: str, name: str) -> dict[str, Any] | None:
    """A WorkflowTemplate's spec, or None when there is none of that name."""
    found = await _found(api, WorkflowTemplate, namespace, name)
    return None if found is None else dict(found.get("spec") or {})


async def delete_workflow(api: AsyncClient, namespace: str, name: str) -> None:
    try:
        await api.delete(Workflow, name, namespace=namespace)
    except ApiError as error:
        if error.status.code != 404:
            raise


async def put_worker_url(api: AsyncClient, namespace: str, pool: str, url: str) -> None:
    """Puts a pool's Redis URL (its own user and password) in the namespace's `treadle-redis`
    Secret, under the pool's name: the key its worker pods read.  One Secret a namespace, so
    the operator may write Secrets by that one name only."""
    change = {"data": {pool: base64.b64encode(url.encode()).decode()}}
    try:
        await _merge_redis_secret(api, namespace, change)
        return
    except ApiError as error:
        if error.status.code != 404:
            raise
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": REDIS_SECRET,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "treadle"},
        },
    }
    # Made by an apply (the verb RBAC grants by name) of no data: two pools making it at once
    # apply the same thing, where an apply of each one's key would drop the other's (a
    # manager's apply removes the fields its last apply had and this one lacks); each key is
    # then merged in.
    await api.patch(
        Secret, REDIS_SECRET, body, namespace=namespace, patch_type=PatchType.APPLY, force=True
    )
    await _merge_redis_secret(api, namespace, change)


async def _merge_redis_secret(api: AsyncClient, namespace: str, change: dict[str, Any]) -> None:
    await api.patch(Secret, REDIS_SECRET, change, namespace=namespace, patch_type=PatchType.MERGE)


async def drop_worker_url(api: AsyncClient, namespace: str, pool: str) -> None:
    """Removes a gone pool's URL from the namespace's Secret."""
    change = {"data": {pool: None}}
    try:
        await _merge_redis_secret(api, namespace, change)
    except ApiError as error:
        if error.status.code != 404:
            raise


async def ensure_random_secret(api: AsyncClient, namespace: str, name: str, key: str) -> bool:
    """Makes the Secret `name` with a random value under `key` unless it exists (then it is
    left as it is); True when it was made.  So the chart's Redis password is made once, in the
    cluster, and no `helm template` or Argo CD render makes another."""
    try:
        await api.get(Secret, name, namespace=namespace)
        return False
    except ApiError as error:
        if error.status.code != 404:
            raise
    value = secrets.token_urlsafe(32)
    body: Secret = Secret.from_dict(  # type: ignore[assignment]
        {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "treadle"},
            },
            "type": "Opaque",
            "data": {key: base64.b64encode(value.encode()).decode()},
        }
    )
    try:
        await api.create(body)
    except ApiError as error:
        if error.status.code == 409:  # another replica made it first: theirs stands
            return False
        raise
    return True


@dataclass(frozen=True)
class WorkerPods:
    """What `ensure_worker_pods` found."""

    created: int = 0
    """Pods created now."""
    ready: int = 0
    """Pods whose Ready condition is True."""
    oldest: datetime | None = None
    """When the oldest pod not ready was created (None: every pod is ready, or was just made)."""
    problem: str | None = None
    """Why a pod is not starting, as its status says (e.g. `ImagePullBackOff: ...`)."""


def _pod_problem(pod: Pod) -> str | None:
    status = pod.status
    if status is None:
        return None
    name = pod.metadata.name if pod.metadata else "?"
    for container in [*(status.initContainerStatuses or []), *(status.containerStatuses or [])]:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason not in (
            None,
            "ContainerCreating",
            "PodInitializing",
        ):
            return f"pod {name}: {waiting.reason}: {waiting.message or ''}".rstrip(": ")
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"pod {name}: {condition.reason}: {condition.message or ''}".rstrip(": ")
    return None


def _is_ready(pod: Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


async def ensure_worker_pods(api: AsyncClient, pods: list[dict[str, Any]]) -> WorkerPods:
    """Creates the pods that do not exist (a deleted or failed one is replaced), and says how
    the others are doing."""
    created = ready = 0
    oldest: datetime | None = None
    problem: str | None = None
    for body in pods:
        meta = body["metadata"]
        try:
            existing = await api.get(Pod, meta["name"], namespace=meta["namespace"])
        except ApiError as error:
            if error.status.code != 404:
                raise
        else:
            phase = existing.status.phase if existing.status else None
            made_from = (existing.metadata.annotations or {}) if existing.metadata else {}
            # A pod made before pods carried a digest is kept (an upgrade rolls nothing).
            stale = made_from.get(SPEC_DIGEST) not in (None, meta["annotations"][SPEC_DIGEST])
            if (
                existing.metadata
                and existing.metadata.deletionTimestamp is None
                and phase not in ("Failed", "Succeeded")
                and not stale
            ):
                if _is_ready(existing):
                    ready += 1
                    continue
                born = existing.metadata.creationTimestamp
                if born is not None and (oldest is None or born < oldest):
                    oldest = born
                problem = problem or _pod_problem(existing)
                continue
            deleting = existing.metadata is not None and existing.metadata.deletionTimestamp
            if phase in ("Failed", "Succeeded") or (stale and not deleting):
                try:
                    await api.delete(Pod, meta["name"], namespace=meta["namespace"])
                except ApiError as error:
                    if error.status.code != 404:  # gone meanwhile: as good
                        raise
            continue  # a terminating pod is replaced on the next pass
        pod: Pod = Pod.from_dict(body)  # type: ignore[assignment]
        try:
            await api.create(pod)
        except ApiError as error:
            if error.status.code != 409:  # made meanwhile (a pass that failed after it): kept
                raise
            continue
        created += 1
    return WorkerPods(created, ready, oldest, problem)


async def delete_worker_pods(api: AsyncClient, namespace: str, workflow_name: str) -> None:
    labels: dict[str, Any] = {LABEL_WORKFLOW: workflow_name, LABEL_COMPONENT: "worker"}
    async for pod in api.list(Pod, namespace=namespace, labels=labels):
        if pod.metadata is None or pod.metadata.name is None:
            continue
        try:
            await api.delete(Pod, pod.metadata.name, namespace=namespace)
        except ApiError as error:
            if error.status.code != 404:
                raise


async def label_pod(api: AsyncClient, namespace: str, name: str, key: str, value: str) -> None:
    """Sets a label on a pod (the operator's own, to mark the leader)."""
    await api.patch(
        Pod,
        name,
        {"metadata": {"labels": {key: value}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


async def unlabel_other_pods(
    api: AsyncClient, namespace: str, own: str, key: str, value: str
) -> list[str]:
    """Sets `key` to "false" on every other pod labelled `key=value` (a leader that lost its
    Lease while wedged cannot take its own label off; its successor does), and returns them."""
    others = [
        pod.metadata.name
        async for pod in api.list(Pod, namespace=namespace, labels={key: value})
        if pod.metadata is not None and pod.metadata.name and pod.metadata.name != own
    ]
    for name in others:
        await label_pod(api, namespace, name, key, "false")
    return others


_OWN_USER: list[dict[str, Any]] = []


async def own_user_info(api: AsyncClient) -> dict[str, Any]:
    """Who the operator is to the API server: username and groups (a SelfSubjectReview, asked
    once)."""
    if not _OWN_USER:
        from lightkube.resources.authentication_v1 import SelfSubjectReview

        answer = await api.create(SelfSubjectReview())
        info = answer.status.userInfo if answer.status else None
        _OWN_USER.append(
            {
                "username": (info.username if info else None) or "",
                "groups": list((info.groups if info else None) or []),
            }
        )
    return dict(_OWN_USER[0])


async def own_username(api: AsyncClient) -> str | None:
    """Who the operator is to the API server (a SelfSubjectReview, asked once)."""
    return (await own_user_info(api))["username"] or None


async def may_get_secret(
    api: AsyncClient, namespace: str, secret: str, user: Mapping[str, Any]
) -> bool:
    """Whether `user` (an admission request's userInfo) may `get` the Secret: a
    SubjectAccessReview, so that naming a Secret in a Workflow or SyncJob reads nothing its
    author could not read already."""
    return await may(api, user, namespace=namespace, verb="get", resource="secrets", name=secret)


async def may(
    api: AsyncClient,
    user: Mapping[str, Any],
    *,
    namespace: str,
    verb: str,
    resource: str,
    group: str = "",
    subresource: str | None = None,
    name: str | None = None,
) -> bool:
    """Whether `user` (userInfo: username, uid, groups, extra) may do this: a
    SubjectAccessReview, answered by the cluster's own authorizers (RBAC)."""
    from lightkube.models.authorization_v1 import ResourceAttributes, SubjectAccessReviewSpec
    from lightkube.resources.authorization_v1 import SubjectAccessReview

    extra = {key: list(values) for key, values in (user.get("extra") or {}).items()}
    review = SubjectAccessReview(
        spec=SubjectAccessReviewSpec(
            user=user.get("username"),
            uid=user.get("uid"),
            groups=list(user.get("groups") or []),
            extra=extra or None,
            resourceAttributes=ResourceAttributes(
                namespace=namespace,
                verb=verb,
                group=group or None,
                resource=resource,
                subresource=subresource,
                name=name,
            ),
        )
    )
    answer = await api.create(review)
    return bool(answer.status is not None and answer.status.allowed)


async def get_workflow(api: AsyncClient, namespace: str, name: str) -> dict[str, Any] | None:
    """A Workflow as the API server holds it, or None when there is none of that name."""
    found = await _found(api, Workflow, namespace, name)
    return None if found is None else dict(found)


async def get_syncjob(api: AsyncClient, namespace: str, name: str) -> dict[str, Any] | None:
    """A SyncJob as the API server holds it, or None when there is none of that name."""
    found = await _found(api, SyncJob, namespace, name)
    return None if found is None else dict(found)


async def front_proxy(api: AsyncClient) -> delegation.FrontProxy | None:
    """How the API server forwards users' requests to aggregated APIs (None: it does not)."""
    from lightkube.resources.core_v1 import ConfigMap

    try:
        found = await api.get(
            ConfigMap, delegation.CONFIGMAP_NAME, namespace=delegation.CONFIGMAP_NAMESPACE
        )
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise
    return delegation.FrontProxy.of(found.data or {})


LOG_API_GROUP = "logs.treadle.dev"
LOG_API_VERSION = "v1alpha1"
LOG_API_SERVICE_PORT = 443


async def publish_log_api(
    api: AsyncClient,
    service: tuple[str, str],
    ca_pem: bytes,
    endpoint: tuple[str, int] | None = None,
) -> None:
    """Registers the log API with the API server (APIService `v1alpha1.logs.treadle.dev`,
    trusting `ca_pem` for its serving certificate) as reached through `service` (namespace,
    name; port 443): sets the CA of the registration the chart made, or makes one.  With
    `endpoint` (address, port) that Service and the registration are made here, the Service
    without a selector, pointing there: an operator outside any pod (the local cluster)."""
    from lightkube.models.apiregistration_v1 import APIServiceSpec, ServiceReference
    from lightkube.models.core_v1 import (
        EndpointAddress,
        EndpointPort,
        EndpointSubset,
        ServicePort,
        ServiceSpec,
    )
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.apiregistration_v1 import APIService
    from lightkube.resources.core_v1 import Endpoints, Namespace, Service

    namespace, name = service
    if endpoint is not None:
        address, port = endpoint
        try:
            await api.create(Namespace(metadata=ObjectMeta(name=namespace)))
        except ApiError as error:
            if error.status.code != 409:
                raise
        labels = {LABEL_COMPONENT: "log-api"}
        meta = ObjectMeta(name=name, namespace=namespace, labels=labels)
        ports = [ServicePort(name="https", port=LOG_API_SERVICE_PORT, targetPort=port)]
        await api.apply(Service(metadata=meta, spec=ServiceSpec(ports=ports)), force=True)
        subset = EndpointSubset(
            addresses=[EndpointAddress(ip=address)],
            ports=[EndpointPort(name="https", port=port)],
        )
        await api.apply(Endpoints(metadata=meta, subsets=[subset]), force=True)
    name_of_api = f"{LOG_API_VERSION}.{LOG_API_GROUP}"
    bundle = base64.b64encode(ca_pem).decode()
    if endpoint is None:
        # The chart made the registration (so that uninstalling removes it): only the CA of
        # this replica's certificate is the operator's to set.
        try:
            await api.patch(
                APIService,
                name_of_api,
                {"spec": {"caBundle": bundle}},
                patch_type=PatchType.MERGE,
            )
            return
        except ApiError as error:
            if error.status.code != 404:
                raise
    registration = APIService(
        metadata=ObjectMeta(name=name_of_api),
        spec=APIServiceSpec(
            group=LOG_API_GROUP,
            version=LOG_API_VERSION,
            service=ServiceReference(namespace=namespace, name=name, port=LOG_API_SERVICE_PORT),
            caBundle=bundle,
            groupPriorityMinimum=1000,
            versionPriority=15,
        ),
    )
    await api.apply(registration, force=True)
