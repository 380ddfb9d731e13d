"""Timestamps as Kubernetes writes them: RFC 3339 in UTC, second precision (`...T08:00:00Z`).
The one place they are written and read."""

from __future__ import annotations

from datetime import UTC, datetime


def text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a timestamp needs an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(written: str) -> datetime:
    """A timestamp Kubernetes or Treadle wrote (any RFC 3339 form), as an aware datetime."""
    moment = datetime.fromisoformat(written)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_optional(written: str | None) -> datetime | None:
    return parse(written) if written else None
