"""What a user may put into a pod that Treadle creates for them (a SyncJob's run pod, a
workflow's workers): an allow-list, checked at apply time, so that creating a SyncJob or a
Workflow gives no right the user did not have (SPEC, SyncJob: run pods; Deployment: least
privilege).  Host namespaces, hostPath and other node-reaching volumes, service accounts and
their tokens, privileged or root security contexts and `nodeName` are all outside it.

The checks return problems that name the field, in the words of `kubectl explain` paths; the
Secrets a spec names are listed for the webhook's SubjectAccessReview (may the user who
applies it `get` each of them?).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

NON_ROOT_USER = 65532
"""The user a pod Treadle makes runs as when its spec names none (distroless's `nonroot`)."""


def restricted_container(container: Mapping[str, Any]) -> dict[str, Any]:
    """The container with the security context Pod Security Standards *restricted* asks for,
    whatever it set (the allow-list admits only settings at least this strict)."""
    context = dict(container.get("securityContext") or {})
    context.update(
        allowPrivilegeEscalation=False,
        capabilities={"drop": ["ALL"]},
        runAsNonRoot=True,
        seccompProfile={"type": "RuntimeDefault"},
    )
    return {**container, "securityContext": context}


def restricted_pod_context(context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A pod-level security context for *restricted*: non-root, RuntimeDefault seccomp."""
    restricted = dict(context or {})
    restricted.update(runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"})
    restricted.setdefault("runAsUser", NON_ROOT_USER)
    return restricted


POD_FIELDS = frozenset(
    {
        "containers",
        "initContainers",
        "volumes",
        "nodeSelector",
        "affinity",
        "tolerations",
        "priorityClassName",
        "imagePullSecrets",
        "securityContext",
        "terminationGracePeriodSeconds",
        "restartPolicy",
        "activeDeadlineSeconds",
    }
)
CONTAINER_FIELDS = frozenset(
    {
        "name",
        "image",
        "imagePullPolicy",
        "command",
        "args",
        "env",
        "envFrom",
        "resources",
        "volumeMounts",
        "workingDir",
        "securityContext",
        "ports",
    }
)
VOLUME_KINDS = frozenset({"emptyDir", "configMap", "secret", "persistentVolumeClaim", "ephemeral"})
MOUNT_FIELDS = frozenset({"name", "mountPath", "subPath", "readOnly"})
POD_SECURITY_FIELDS = frozenset(
    {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups", "seccompProfile"}
)
CONTAINER_SECURITY_FIELDS = frozenset(
    {
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "seccompProfile",
        "capabilities",
    }
)
RESERVED_ENV_PREFIX = "TREADLE_"
"""Names Treadle sets itself in the pods it makes (the Redis URL, Secret-backed headers)."""


def _outside(value: Mapping[str, Any], allowed: frozenset[str], path: str) -> list[str]:
    return [
        f"{path}.{name}: not allowed in a pod Treadle runs for you "
        f"(allowed: {', '.join(sorted(allowed))})"
        for name in sorted(set(value) - allowed)
    ]


def pod_problems(spec: Any, path: str) -> list[str]:
    """Every field of a PodSpec outside the allow-list, by its path."""
    if not isinstance(spec, Mapping):
        return [f"{path}: must be an object (a core/v1 PodSpec)"]
    problems = _outside(spec, POD_FIELDS, path)
    security = spec.get("securityContext")
    problems += _security_problems(security, f"{path}.securityContext", POD_SECURITY_FIELDS)
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        problems.append(f"{path}.containers: at least one container is required")
    for kind in ("containers", "initContainers"):
        for index, container in enumerate(_list(spec.get(kind))):
            problems += container_problems(container, f"{path}.{kind}[{index}]")
    for index, volume in enumerate(_list(spec.get("volumes"))):
        problems += _volume_problems(volume, f"{path}.volumes[{index}]")
    return problems + _toleration_problems(spec.get("tolerations"), f"{path}.tolerations")


def _toleration_problems(tolerations: Any, path: str) -> list[str]:
    return [
        f"{path}[{index}]: operator Exists without a key tolerates every taint (name the "
        "taint's key)"
        for index, toleration in enumerate(_list(tolerations))
        if isinstance(toleration, Mapping)
        and toleration.get("operator") == "Exists"
        and not toleration.get("key")
    ]


JOB_CONTAINER_FIELDS = frozenset(
    {
        "image",
        "command",
        "args",
        "workingDir",
        "imagePullPolicy",
        "env",
        "resources",
        "volumeMounts",
        "securityContext",
    }
)
"""The fields of a `job` task's spec that make its container (the rest make its pod)."""


def job_problems(job: Mapping[str, Any], path: str) -> list[str]:
    """A `job` task's pod, its fields flattened as the task writes them: the same allow-list
    as a SyncJob run pod's, each problem naming the task's own field."""
    container = {k: v for k, v in job.items() if k in JOB_CONTAINER_FIELDS}
    problems = container_problems({"name": "main", **container}, path)
    volumes = _list(job.get("volumes"))
    for index, volume in enumerate(volumes):
        problems += _volume_problems(volume, f"{path}.volumes[{index}]")
    declared = {v.get("name") for v in volumes if isinstance(v, Mapping)}
    for index, mount in enumerate(_list(job.get("volumeMounts"))):
        if isinstance(mount, Mapping) and mount.get("name") not in declared:
            problems.append(
                f"{path}.volumeMounts[{index}].name: {mount.get('name')!r} is none of the "
                "job's volumes"
            )
    problems += _toleration_problems(job.get("tolerations"), f"{path}.tolerations")
    for field in ("affinity", "resources"):
        if field in job and not isinstance(job[field], Mapping):
            problems.append(f"{path}.{field}: must be an object")
    return problems


def container_problems(container: Any, path: str) -> list[str]:
    if not isinstance(container, Mapping):
        return [f"{path}: must be an object (a core/v1 Container)"]
    problems = _outside(container, CONTAINER_FIELDS, path)
    security = container.get("securityContext")
    problems += _security_problems(security, f"{path}.securityContext", CONTAINER_SECURITY_FIELDS)
    problems += env_problems(container.get("env"), f"{path}.env")
    problems += resources_problems(container.get("resources"), f"{path}.resources")
    for index, mount in enumerate(_list(container.get("volumeMounts"))):
        if isinstance(mount, Mapping):
            for name in sorted(set(mount) - MOUNT_FIELDS):
                problems.append(f"{path}.volumeMounts[{index}].{name}: not allowed")
    for index, port in enumerate(_list(container.get("ports"))):
        if isinstance(port, Mapping) and "hostPort" in port:
            problems.append(f"{path}.ports[{index}].hostPort: not allowed")
    return problems


QUANTITY = re.compile(
    r"^[+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+|[KMGTPE]i|[kMGTPE]|[mun])?$"
)
"""A Kubernetes resource quantity (`500m`, `1.5Gi`, `2e3`): what the API server accepts in a
container's requests and limits."""
RESOURCE_NAME = re.compile(r"^([a-z0-9.-]+/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$")
RESOURCE_FIELDS = frozenset({"requests", "limits"})


def resources_problems(resources: Any, path: str) -> list[str]:
    """A container's `resources`: requests and limits of resource names to quantities.  An
    invalid one left a workflow Pending for ever (its pod is refused, so no start timeout
    began) and its pool warning every 2 s."""
    if resources is None:
        return []
    if not isinstance(resources, Mapping):
        return [f"{path}: must be an object with requests and limits"]
    known = {*RESOURCE_FIELDS, "claims"}
    problems = [f"{path}.{name}: not allowed" for name in sorted(set(resources) - known)]
    for field in sorted(RESOURCE_FIELDS & set(resources)):
        amounts = resources[field]
        if not isinstance(amounts, Mapping):
            problems.append(f"{path}.{field}: must map resource names to quantities")
            continue
        for name, amount in amounts.items():
            where = f"{path}.{field}.{name}"
            if not isinstance(name, str) or not RESOURCE_NAME.match(name) or len(name) > 253:
                problems.append(f"{where}: not a resource name")
            elif isinstance(amount, bool) or not isinstance(amount, int | float | str):
                problems.append(f"{where}: must be a quantity such as 500m or 1Gi")
            elif isinstance(amount, str) and not QUANTITY.match(amount):
                problems.append(f"{where}: {amount!r:.40} is not a quantity (such as 500m or 1Gi)")
            elif not isinstance(amount, str) and amount < 0:
                problems.append(f"{where}: must not be negative")
    return problems


def env_problems(env: Any, path: str) -> list[str]:
    """Environment variables: no names Treadle reserves; values from Secrets are allowed here
    (the webhook checks the applying user may read each Secret)."""
    problems = []
    for index, variable in enumerate(_list(env)):
        if not isinstance(variable, Mapping):
            problems.append(f"{path}[{index}]: must be an object (a core/v1 EnvVar)")
            continue
        name = str(variable.get("name", ""))
        if name.startswith(RESERVED_ENV_PREFIX):
            problems.append(
                f"{path}[{index}].name: {name!r}: names starting with {RESERVED_ENV_PREFIX} "
                "are Treadle's own"
            )
    return problems


def _security_problems(context: Any, path: str, allowed: frozenset[str]) -> list[str]:
    if context is None:
        return []
    if not isinstance(context, Mapping):
        return [f"{path}: must be an object"]
    problems = [f"{path}.{name}: not allowed" for name in sorted(set(context) - allowed)]
    for name in ("runAsUser", "runAsGroup"):
        if context.get(name) == 0:
            problems.append(f"{path}.{name}: 0 (root) is not allowed")
    if context.get("runAsNonRoot") is False:
        problems.append(f"{path}.runAsNonRoot: false is not allowed")
    if context.get("allowPrivilegeEscalation") is True:
        problems.append(f"{path}.allowPrivilegeEscalation: true is not allowed")
    added = (
        (context.get("capabilities") or {}).get("add")
        if isinstance(context.get("capabilities"), Mapping)
        else None
    )
    if added:
        problems.append(f"{path}.capabilities.add: adding capabilities is not allowed")
    seccomp = context.get("seccompProfile")
    if isinstance(seccomp, Mapping) and seccomp.get("type") == "Unconfined":
        problems.append(f"{path}.seccompProfile.type: Unconfined is not allowed")
    return problems


def _volume_problems(volume: Any, path: str) -> list[str]:
    if not isinstance(volume, Mapping):
        return [f"{path}: must be an object (a core/v1 Volume)"]
    kinds = set(volume) - {"name"}
    refused = sorted(kinds - VOLUME_KINDS)
    if refused:
        return [
            f"{path}.{kind}: volumes of this kind are not allowed "
            f"(allowed: {', '.join(sorted(VOLUME_KINDS))})"
            for kind in refused
        ]
    return []


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def secrets_in_pod(spec: Any) -> set[str]:
    """The Secrets a PodSpec reads: env, envFrom, volumes, imagePullSecrets."""
    if not isinstance(spec, Mapping):
        return set()
    found: set[str] = set()
    for kind in ("containers", "initContainers"):
        for container in _list(spec.get(kind)):
            if isinstance(container, Mapping):
                found |= secrets_in_env(container.get("env"))
                for source in _list(container.get("envFrom")):
                    name = get_text(source, "secretRef", "name")
                    if name:
                        found.add(name)
    for volume in _list(spec.get("volumes")):
        name = get_text(volume, "secret", "secretName")
        if name:
            found.add(name)
    for reference in _list(spec.get("imagePullSecrets")):
        if isinstance(reference, Mapping) and isinstance(reference.get("name"), str):
            found.add(reference["name"])
    return found


def secrets_in_env(env: Any) -> set[str]:
    return {
        name
        for variable in _list(env)
        if (name := get_text(variable, "valueFrom", "secretKeyRef", "name"))
    }


def get_text(value: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value if isinstance(value, str) and value else None
