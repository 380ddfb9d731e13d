"""Which workflow: its uid, name, namespace and the pool its tasks run on (a WorkerPool's, or
its own worker pods'), made one way from its metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from treadle.core import pools


def dedicated_pool(uid: str) -> str:
    """The pool of a workflow's own worker pods."""
    return f"wf-{uid}"


@dataclass(frozen=True)
class Identity:
    """Which workflow: from its metadata (`of`), the one way it is made."""

    uid: str
    name: str
    namespace: str
    pool: str

    @classmethod
    def of(cls, meta: Mapping[str, Any], worker_pool: str | None = None) -> Identity:
        """From a workflow's metadata (a uid is missing while the webhook sees a create) and
        the WorkerPool its status names (None: its own worker pods)."""
        uid = str(meta.get("uid") or "")
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
        pool = (
            dedicated_pool(uid)
            if worker_pool is None
            else pools.shared_pool(namespace, worker_pool)
        )
        return cls(uid=uid, name=name, namespace=namespace, pool=pool)

    @property
    def shared(self) -> bool:
        """Whether the workflow runs on a WorkerPool (not on pods of its own)."""
        return pools.is_shared(self.pool)

    @property
    def context(self) -> dict[str, str]:
        """What templates see as `workflow`."""
        return {"name": self.name, "namespace": self.namespace, "uid": self.uid}
