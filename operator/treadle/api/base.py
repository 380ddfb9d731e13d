"""Shared pieces of the resource models: the model base, conditions and CRD schema hints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
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
