"""JSON merge patches (RFC 7386) between two versions of a document.

The driver keeps each workflow's status as last written and sends only the difference: keys the
engine dropped become `null` (a merge patch of the whole status would leave them on the server),
and a pass that finished a hundred children sends those hundred outputs, not all ten thousand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `before` into `after`; empty when they are equal.

    Lists are replaced whole (merge patches cannot edit them); a `None` in `after` is not
    representable and is treated as a removal.
    """
    patch: dict[str, Any] = {}
    for key in before.keys() - after.keys():
        patch[key] = None
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            inner = merge_patch(old, value)
            if inner:
                patch[key] = inner
        elif key not in before or old != value:
            patch[key] = value
    return patch


def apply_merge_patch(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`document` with `patch` applied, as the API server does it."""
    result = dict(document)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            old = result.get(key)
            result[key] = apply_merge_patch(old if isinstance(old, Mapping) else {}, value)
        else:
            result[key] = value
    return result


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists and scalars), without `copy.deepcopy`'s
    memo and dispatch: about 2.5 times faster on a 10,000-child workflow's status, which the
    engine copies on every pass."""
    if isinstance(value, Mapping):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value
