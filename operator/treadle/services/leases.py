"""Locks as `coordination.k8s.io/v1` Leases in the job's namespace.

- Taking a lock is optimistic: read the Lease, and write it back with the resourceVersion read;
  a 409 means someone else wrote first, so read and decide again.  Creating a missing Lease
  is the same race, settled by the API server's 409 on create.
- A Lease is held while `renewTime + leaseDurationSeconds` is in the future; after that anyone
  may take it over.  Its holder renews it well before (every third of the duration).
- `leaseTransitions` counts changes of holder: a holder that finds a different count (or a
  different holder) on renewal has lost the lock, and its work must stop (fencing).
- Releasing clears the holder and keeps the Lease (and its transition count).
- A lapsed Lease is taken over only once its holder is gone (`holder_lives`, when given): an
  operator that was away longer than a Lease's duration must not hand a lock to a second run
  while the first one still runs; that run's job takes it again as the same holder.
- A store may remember each Lease as it last read or wrote it (`known`, shareable between
  stores): the next write starts from that copy instead of a fresh read, and the API server's
  409 for a stale copy sends it back to read.  A lock taken, renewed and released by the same
  operator then costs one request each time, not two.  Only a write is ever based on a
  remembered copy: "someone else holds it" is always confirmed by a fresh read.

Times are wall-clock times written by whoever takes or renews a Lease and compared by whoever
reads it: the machines involved must have clocks in step to well within a Lease's duration
(NTP-synced nodes are within milliseconds; the default duration is a minute).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)

DEFAULT_DURATION_SECONDS = 60
CONFLICT_RETRIES = 5


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def current_holder(spec: LeaseSpec | None, now: datetime) -> str | None:
    """Who holds the Lease at `now`: None when nobody does or the holder's time ran out."""
    if spec is None or not spec.holderIdentity:
        return None
    renewed = spec.renewTime or spec.acquireTime
    if renewed is None:
        return None
    duration = timedelta(seconds=spec.leaseDurationSeconds or DEFAULT_DURATION_SECONDS)
    return spec.holderIdentity if now < renewed + duration else None


@dataclass(frozen=True)
class Held:
    lock: str
    holder: str
    transitions: int
    """The Lease's leaseTransitions when taken: the fencing token."""


@dataclass
class LeaseStore:
    api: AsyncClient
    namespace: str
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    clock: Callable[[], datetime] = field(default=_wall_clock)
    taken: dict[tuple[str, str], Held] = field(default_factory=dict)
    """What `acquire` took, by (lock, holder): the fencing tokens to renew with."""
    known: dict[tuple[str, str], Lease] | None = None
    """Leases as last read or written, by (namespace, lock); None: always read first."""
    holder_lives: Callable[[str], Awaitable[bool]] | None = None
    """Whether the holder of a lapsed Lease still runs (None: a lapsed Lease is free)."""

    async def _get(self, lock: str) -> Lease | None:
        try:
            return await self.api.get(Lease, lock, namespace=self.namespace)
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    async def _read(self, lock: str) -> tuple[Lease | None, bool]:
        """The Lease to base a write on, and whether it is a remembered copy."""
        if self.known is not None and (kept := self.known.get((self.namespace, lock))):
            return copy.deepcopy(kept), True  # its own: another job may write from it too
        return self._remember(lock, await self._get(lock)), False

    def _remember(self, lock: str, lease: Lease | None) -> Lease | None:
        if self.known is not None:
            if lease is None:
                self.known.pop((self.namespace, lock), None)
            else:
                self.known[(self.namespace, lock)] = lease
        return lease

    async def _write(self, lease: Lease, lock: str, *, create: bool = False) -> None:
        """Writes the Lease (with the resourceVersion it carries); a failed write forgets the
        remembered copy, so the next try reads."""
        try:
            written = await (self.api.create(lease) if create else self.api.replace(lease))
        except BaseException:
            self._remember(lock, None)
            raise
        self._remember(lock, written)

    async def take(self, lock: str, holder: str, duration_seconds: int | None = None) -> Held | str:
        """Takes (or renews) `lock` for `holder`: what is now held, or who else holds it."""
        duration = duration_seconds or self.duration_seconds
        for _ in range(CONFLICT_RETRIES):
            now = self.clock()
            lease, remembered = await self._read(lock)
            if lease is None:
                spec = LeaseSpec(
                    holderIdentity=holder,
                    leaseDurationSeconds=duration,
                    acquireTime=now,
                    renewTime=now,
                    leaseTransitions=0,
                )
                body = Lease(metadata=ObjectMeta(name=lock, namespace=self.namespace), spec=spec)
                try:
                    await self._write(body, lock, create=True)
                except ApiError as error:
                    if error.status.code == 409:
                        continue  # created by someone else meanwhile
                    raise
                return Held(lock, holder, 0)
            spec = lease.spec or LeaseSpec()
            other = current_holder(spec, now)
            if other not in (None, holder):
                if remembered:
                    self._remember(lock, None)
                    continue  # confirm with a fresh read
                return other
            previous = spec.holderIdentity
            if (
                previous not in (None, holder)
                and self.holder_lives is not None
                and await self.holder_lives(str(previous))
            ):
                return str(previous)
            transitions = spec.leaseTransitions or 0
            if spec.holderIdentity != holder:
                transitions += 1
                spec.acquireTime = now
            spec.holderIdentity = holder
            spec.leaseDurationSeconds = duration
            spec.renewTime = now
            spec.leaseTransitions = transitions
            lease.spec = spec
            try:
                await self._write(lease, lock)  # carries the resourceVersion we read
            except ApiError as error:
                if error.status.code == 409:
                    continue
                raise
            return Held(lock, holder, transitions)
        return await self.holder(lock) or "(contended)"

    async def acquire(self, lock: str, holder: str) -> str | None:
        """The gate's view (`treadle.core.gates.LockStore`): None when held by `holder`."""
        taken = await self.take(lock, holder)
        if isinstance(taken, Held):
            self.taken[(lock, holder)] = taken
            return None
        return taken

    async def holder(self, lock: str) -> str | None:
        lease = await self._get(lock)
        return current_holder(lease.spec if lease else None, self.clock())

    async def renew(self, held: Held) -> bool:
        """Extends a held lock; False when it was lost (taken over after expiring)."""

        def extend(spec: LeaseSpec) -> bool:
            if (spec.leaseTransitions or 0) != held.transitions:
                return False
            spec.renewTime = self.clock()
            return True

        return await self._rewrite(held.lock, held.holder, extend)

    async def take_all(self, locks: list[str], holder: str) -> list[Held] | tuple[str, str]:
        """Takes every lock for `holder` (after a restart, as the same holder): what is held,
        or the first lock someone else holds and who."""
        held = []
        for lock in locks:
            taken = await self.take(lock, holder)
            if isinstance(taken, str):
                return lock, taken
            held.append(taken)
        return held

    async def renew_all(self, held: list[Held]) -> str | None:
        """Extends every held lock: None, or the first one lost (taken over after expiring)."""
        for lock in held:
            if not await self.renew(lock):
                return lock.lock
        return None

    async def release_all(self, held: list[Held]) -> None:
        for lock in held:
            await self.release(lock.lock, lock.holder)

    async def release(self, lock: str, holder: str) -> bool:
        """Gives up `lock` if `holder` holds it; True when it did."""
        self.taken.pop((lock, holder), None)

        def clear(spec: LeaseSpec) -> bool:
            spec.holderIdentity = spec.renewTime = spec.acquireTime = None
            return True

        return await self._rewrite(lock, holder, clear)

    async def _rewrite(self, lock: str, holder: str, change: Callable[[LeaseSpec], bool]) -> bool:
        """Applies `change` to the Lease while `holder` holds it, re-reading on conflicts;
        False when `holder` does not hold it or `change` declines."""
        for _ in range(CONFLICT_RETRIES):
            lease, remembered = await self._read(lock)
            spec = lease.spec if lease else None
            if lease is None or spec is None or spec.holderIdentity != holder or not change(spec):
                if remembered:
                    self._remember(lock, None)
                    continue  # confirm with a fresh read
                return False
            try:
                await self._write(lease, lock)
            except ApiError as error:
                if error.status.code == 409:
                    continue
                raise
            return True
        return False
