"""What the SyncJob scheduler keeps of each job between looks, and the lock store as a DDL job
sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lightkube.models.core_v1 import ObjectReference

from treadle.api import GROUP, VERSION, syncjobs
from treadle.api.syncjobs import SyncJobSpec, SyncJobStatus
from treadle.core import gates
from treadle.core.requests import AnnotationRequests
from treadle.services import events
from treadle.services.leases import Held, LeaseStore


@dataclass
class Job:
    uid: str
    name: str
    namespace: str
    spec: SyncJobSpec
    status: SyncJobStatus
    """As last written."""
    created: datetime
    generation: int | None
    due: datetime | None = None
    """When to look at the job again without news; None: at once; NEVER: on news only."""
    busy: asyncio.Task[None] | None = None
    """The look at the job (and the attempt it starts) under way: the loop leaves it alone."""
    held: dict[str, list[Held]] = field(default_factory=dict)
    """The locks held, by holder (a run, or the runs that share them)."""
    renew_at: datetime | None = None
    phases: dict[str, str] = field(default_factory=dict)
    """Each run's phase as last seen (Gone: deleted); missing: not looked at yet."""
    stopping: dict[str, str] = field(default_factory=dict)
    """Runs asked to stop (a Workflow terminates in its own time), with why."""
    backfill_due: datetime | None = None
    """When the backfill tries again to get its locks."""
    lock_released: bool = False
    """A lock of the job was given back by another run since it last looked: a run skipped
    on it is retried now."""
    spec_changed: bool = False
    """A new generation was admitted: its failures are reset."""
    written: dict[str, Any] = field(default_factory=dict)
    """`status` as the API server has it (camelCase JSON): the base of the next merge patch."""
    requests: AnnotationRequests = field(default_factory=AnnotationRequests)
    """Annotations asking for something (run now, reset failures, backfill)."""
    news: int = 0
    """Counts what arrived for the job (a run changed, a lock came free, a new spec): news
    arriving during a look is not lost when the look ends by setting `due`."""

    def look_again(self) -> None:
        """Something changed for the job: it is looked at as soon as it is not busy."""
        self.news += 1
        self.due = None

    @property
    def reference(self) -> ObjectReference:
        return events.reference(
            api_version=f"{GROUP}/{VERSION}",
            kind=syncjobs.KIND,
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
        )

    def locks(self) -> list[str]:
        """The locks a run of this job holds."""
        held = [gates.pipeline_lock(self.spec.pipeline or self.name)]
        if self.spec.ddl:
            held += [gates.table_lock(table) for table in self.spec.tables]
        return held


@dataclass
class WriterAwareLocks:
    """The lock store as a DDL job sees it: a table is also taken while another job's run
    writes to it, so a schema change never starts under a running writer."""

    store: LeaseStore
    writer_of: Callable[[str, str], str | None]

    async def acquire(self, lock: str, holder: str) -> str | None:
        if lock.startswith(gates.TABLE_PREFIX):
            writer = self.writer_of(lock.removeprefix(gates.TABLE_PREFIX), holder)
            if writer is not None:
                return writer
        return await self.store.acquire(lock, holder)

    async def holder(self, lock: str) -> str | None:
        return await self.store.holder(lock)

    async def release(self, lock: str, holder: str) -> None:
        await self.store.release(lock, holder)
