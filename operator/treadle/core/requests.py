"""Requests users make with annotations (`treadle.dev/retry`, `treadle.dev/run-now`, ...),
which the operator removes once it carried them out: each is answered exactly once, whatever
the watch delivers in between.

A request goes `pending` (seen) -> `taken` (being carried out) -> `acted` (carried out, its
annotation not yet removed) -> gone (removed; the object's resourceVersion then is recorded).
The watch keeps delivering the object with the annotation until the removal's own event: those
events (the same value while it is taken or acted on, or any value at a resourceVersion no
newer than the removal) are no new request. A new value, or the same value set again after the
removal, is. Removal is a test-and-remove of the value carried out, so a newer request set in
between stays, and is taken next.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _version(resource_version: str | None) -> int | None:
    if resource_version is None or not resource_version.isdigit():
        return None
    return int(resource_version)


@dataclass
class AnnotationRequests:
    pending: dict[str, str] = field(default_factory=dict)
    """Seen and not yet taken, by annotation: the newest value."""
    taken: dict[str, str] = field(default_factory=dict)
    """Being carried out: an error puts it back to pending."""
    acted: dict[str, str] = field(default_factory=dict)
    """Carried out; its annotation is still to be removed."""
    removed_at: dict[str, int] = field(default_factory=dict)
    """The resourceVersion each annotation's last removal left the object at."""

    def seen(self, annotation: str, value: str, resource_version: str | None) -> bool:
        """The watch shows `annotation` set to `value`: True when that is a new request."""
        version = _version(resource_version)
        if version is not None and version <= self.removed_at.get(annotation, 0):
            return False
        if value in (self.taken.get(annotation), self.acted.get(annotation)):
            return False
        if self.pending.get(annotation) == value:
            return False
        self.pending[annotation] = value
        return True

    def wanted(self, annotation: str) -> bool:
        return annotation in self.pending

    def take(self, annotation: str) -> str | None:
        """The request to carry out now (None: there is none)."""
        value = self.pending.pop(annotation, None)
        if value is not None:
            self.taken[annotation] = value
        return value

    def failed(self, annotation: str) -> None:
        """Carrying it out failed: it is taken again next time (unless a newer one came)."""
        value = self.taken.pop(annotation, None)
        if value is not None:
            self.pending.setdefault(annotation, value)

    def done(self, annotation: str) -> None:
        """Carried out: its annotation is to be removed (`to_remove`, then `removed`)."""
        value = self.taken.pop(annotation, None)
        if value is not None:
            self.acted[annotation] = value

    def to_remove(self) -> list[tuple[str, str]]:
        """The annotations carried out and still to remove, with the value carried out."""
        return list(self.acted.items())

    def removed(self, annotation: str, resource_version: str | None) -> None:
        """The annotation is gone, or holds another value now (`resource_version` None)."""
        self.acted.pop(annotation, None)
        version = _version(resource_version)
        if version is not None:
            self.removed_at[annotation] = max(version, self.removed_at.get(annotation, 0))
