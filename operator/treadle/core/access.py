"""Who applied a spec, and the objects of the namespace it makes Treadle use on their behalf.

The admission webhook asks whether the applying user may read each Secret a spec names; that
check alone fails open the moment the webhook is bypassed (removed, unreachable, or a review
too big for it).  So the API server itself records who applied each spec: the webhook stamps
`treadle.dev/applied-by` (and the user's groups) on every create or spec change, and the
ValidatingAdmissionPolicy `treadle-applied-by` (api/policies.py), which runs inside the API
server and cannot be skipped, refuses a stamp naming anyone but the user making the request.
Before anything of a spec runs, the operator asks the cluster (SubjectAccessReview) whether
that stamped user may `get` every Secret, ConfigMap and PersistentVolumeClaim the spec would
use; a spec with no stamp may use none.  Pure: the shell asks, this module says what to ask.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from treadle.api.policies import APPLIED_BY, APPLIED_BY_GROUPS
from treadle.core import actions

# APPLIED_BY: the user who created the object or last changed its spec (the API server checks
# it); APPLIED_BY_GROUPS: that user's groups, comma-separated, as of that request.

RESOURCES = {
    "secrets": "Secret",
    "configmaps": "ConfigMap",
    "persistentvolumeclaims": "PVC",
    "jobs": "Job",
}

# Where a Kubernetes object reference appears in pod specs, env and volume sources: the key of
# the mapping that holds it, the resource it names, the key of the name.
_REFERENCE_KEYS: dict[str, tuple[str, str]] = {
    "secretKeyRef": ("secrets", "name"),
    "secretRef": ("secrets", "name"),
    "secret": ("secrets", "secretName"),
    "configMapKeyRef": ("configmaps", "name"),
    "configMapRef": ("configmaps", "name"),
    "configMap": ("configmaps", "name"),
    "persistentVolumeClaim": ("persistentvolumeclaims", "claimName"),
}
_FREE_FORM = frozenset({"params"})
"""Fields whose contents are the user's data, not references (never walked)."""


@dataclass(frozen=True)
class Requester:
    username: str
    groups: tuple[str, ...] = ()

    def user_info(self) -> dict[str, Any]:
        return {"username": self.username, "groups": list(self.groups)}


@dataclass(frozen=True)
class Reference:
    resource: str
    """Plural of a core resource: secrets, configmaps or persistentvolumeclaims (or jobs)."""
    name: str
    path: str
    """The field that names it."""
    verb: str = "get"
    group: str = ""

    @property
    def said(self) -> str:
        """What the spec makes Treadle do on its author's behalf, in words."""
        if self.verb == "create":
            return f"runs a pod of its own (a {RESOURCES[self.resource]})"
        return f"names {RESOURCES[self.resource]} {self.name!r}"


JOBS = Reference("jobs", "", "", verb="create", group="batch")
"""A `job` task makes a Job in the namespace: its author must be allowed to make one."""


def stamp(user_info: Mapping[str, Any]) -> dict[str, str]:
    """The annotations recording an admission request's user (what the policy expects)."""
    groups = user_info.get("groups") or []
    return {
        APPLIED_BY: str(user_info.get("username") or ""),
        APPLIED_BY_GROUPS: ",".join(str(group) for group in groups),
    }


def requester(annotations: Mapping[str, Any] | None) -> Requester | None:
    """The stamped user of an object, or None when it carries no stamp."""
    user = (annotations or {}).get(APPLIED_BY)
    if not isinstance(user, str) or not user:
        return None
    groups = (annotations or {}).get(APPLIED_BY_GROUPS)
    named = tuple(g for g in groups.split(",") if g) if isinstance(groups, str) else ()
    return Requester(user, named)


def references(spec: Any, path: str = "spec") -> list[Reference]:
    """Every Secret, ConfigMap and PVC a spec names, wherever it names one (env, envFrom,
    volumes, image pull secrets, HTTP headers, pool settings), `params` left out.  Walked
    without recursion, once per name."""
    found: dict[tuple[str, str], Reference] = {}
    for reference in _walk(spec, path):
        found.setdefault((reference.resource, reference.name), reference)
    return sorted(found.values(), key=lambda r: (r.resource, r.name))


def _walk(spec: Any, root: str) -> Iterator[Reference]:
    pending: list[tuple[Any, str]] = [(spec, root)]
    while pending:
        node, path = pending.pop()
        if isinstance(node, list):
            pending += [(child, f"{path}[{index}]") for index, child in enumerate(node)]
            if path.endswith("imagePullSecrets"):
                yield from (
                    Reference("secrets", item["name"], f"{path}[{index}]")
                    for index, item in enumerate(node)
                    if isinstance(item, Mapping) and _named(item.get("name"))
                )
            continue
        if not isinstance(node, Mapping):
            continue
        for key, child in node.items():
            if key in _FREE_FORM:
                continue
            where = f"{path}.{key}"
            if key in actions.OWN_POD_FIELDS and isinstance(child, Mapping) and "image" in child:
                yield Reference(JOBS.resource, "", where, verb="create", group="batch")
            kind = _REFERENCE_KEYS.get(str(key))
            if kind is not None and isinstance(child, Mapping):
                resource, name_key = kind
                if _named(child.get(name_key)):
                    yield Reference(resource, child[name_key], where)
            if key == "secrets" and isinstance(child, list):  # a WorkerPool's Secret names
                yield from (
                    Reference("secrets", item, f"{where}[{index}]")
                    for index, item in enumerate(child)
                    if _named(item)
                )
            pending.append((child, where))


def _named(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def unstamped(references_: Sequence[Reference], kind: str) -> str:
    first = references_[0]
    return (
        f"{first.path}: {first.said}, but nothing records "
        f"who applied this {kind} (annotation {APPLIED_BY}, which the admission webhook sets): "
        "apply it again while the operator runs"
    )


def refusal(reference: Reference, who: Requester, namespace: str) -> str:
    return (
        f"{reference.path}: {reference.said}, which {who.username!r} may not "
        f"{reference.verb} in namespace {namespace!r}"
    )
