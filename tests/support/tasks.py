"""Python callables for `python` task tests (importable as support.tasks:...)."""

from __future__ import annotations


def add(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b}


async def greet(name: str) -> str:
    return f"hello {name}"


def explode() -> None:
    raise RuntimeError("kaboom")


def merge(users: list[dict[str, object]]) -> dict[str, object]:
    """The seed's fan-in: merge every fetched user into one result."""
    return {"count": len(users), "names": [u["name"] for u in users]}
