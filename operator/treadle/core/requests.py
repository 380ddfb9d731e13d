"""Requests users make with annotations (`treadle.dev/retry`, `treadle.dev/run-now`, ...),
which the operator removes once it carried them out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AnnotationRequests:
    """The watch may still deliver events from before the operator removed an annotation it
    carried out: those (their resourceVersion no newer than the removal's) are no new request."""

    cleared_version: int = 0

    def is_new(self, resource_version: str) -> bool:
        return not (resource_version.isdigit() and int(resource_version) <= self.cleared_version)

    def cleared(self, resource_version: str | None) -> None:
        """The operator removed the annotation; the object is at `resource_version` now."""
        if resource_version is not None and resource_version.isdigit():
            self.cleared_version = int(resource_version)
