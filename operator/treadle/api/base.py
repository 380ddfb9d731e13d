"""Shared pieces of the resource models: the model base, conditions and CRD schema hints."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ResourceModel(BaseModel):
    """Base of every spec and status model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        serialize_by_alias=True,
    )


class StatusRecord(ResourceModel):
    """Base of the status models the core treats as values: frozen (a transition returns a new
    one), and lenient about fields it does not know (the API server prunes those anyway)."""

    model_config = ConfigDict(extra="ignore")


class StatusModel(ResourceModel):
    """Base of the status models the engine works on: mutable (the engine edits its own working
    copy), and lenient about fields it does not know (the API server prunes those anyway)."""

    model_config = ConfigDict(frozen=False, extra="ignore")


def free_form(description: str) -> Any:
    """A field holding any JSON value, kept as the user wrote it."""
    return Field(
        default=None,
        description=description,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


MAX_PARAMS_BYTES = 64 * 1024
MAX_PARAMS_DEPTH = 32


def json_depth(value: Any, limit: int) -> int:
    """How deep a JSON value nests (a scalar is 0), counted without recursion and only up to
    `limit + 1`: a value nested 100,000 deep costs no more than one nested `limit` deep."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if not isinstance(node, dict | list) or depth > limit:
            deepest = max(deepest, depth)
            continue
        children = node.values() if isinstance(node, dict) else node
        deepest = max(deepest, depth + 1)
        pending += [(child, depth + 1) for child in children]
    return deepest


def bounds_problem(value: Any, max_bytes: int, max_depth: int) -> str | None:
    """Why a free-form JSON value is too big or too deep for the SPEC's bounds, or None."""
    if json_depth(value, max_depth) > max_depth:
        return f"nests deeper than {max_depth} levels"
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        return f"is {size} bytes as JSON, over the limit of {max_bytes}"
    return None


def _bounded_params(value: dict[str, Any] | None) -> dict[str, Any] | None:
    problem = None if value is None else bounds_problem(value, MAX_PARAMS_BYTES, MAX_PARAMS_DEPTH)
    if problem is not None:
        raise ValueError(problem)
    return value


Params = Annotated[dict[str, Any] | None, AfterValidator(_bounded_params)]
"""Free-form parameters within the SPEC's bounds (64 KiB as JSON, nesting depth 32)."""


def map_list(*keys: str) -> dict[str, Any]:
    """Schema hints for a list whose items are unique by `keys` (server-side apply merges them)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


SET_LIST: dict[str, Any] = {"x-kubernetes-list-type": "set"}


def cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules (rule, message) checked by the API server at apply time."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": msg} for rule, msg in rules]}


class Condition(ResourceModel):
    """A metav1.Condition: the shape kstatus, kubectl wait, Argo CD and Flux read."""

    type: str
    """Type of the condition: Ready, Reconciling, Stalled, Degraded."""
    status: Literal["True", "False", "Unknown"]
    """Status of the condition."""
    reason: str
    """A CamelCase word saying why the condition has its status."""
    message: str = ""
    """A human-readable explanation."""
    last_transition_time: str
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the condition was computed from."""
