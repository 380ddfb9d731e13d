"""Leader election among operator replicas, through the Lease `treadle-operator`.

Exactly one replica reconciles: it starts kopf, the engine driver and the scheduler only once it
holds the Lease, and renews it every third of its duration.  A standby retries every couple of
seconds and takes over once the leader stopped renewing (it died) — within the Lease's duration
(15 s by default) — or at once when the leader released it on a clean shutdown.  A leader that
cannot renew before its Lease runs out stops reconciling (the process exits and is restarted as
a standby): two leaders never act at once, whatever the network does.

Nothing is lost in a hand-over: status is the record of truth, and the new leader resumes every
workflow and sync job from it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from treadle.runtime import checkpoint
from treadle.services.leases import Held, LeaseStore

log = logging.getLogger(__name__)

LEASE_NAME = "treadle-operator"
DEFAULT_DURATION_SECONDS = 15
RETRY_SECONDS = 2.0


@dataclass
class Leadership:
    store: LeaseStore
    identity: str
    duration_seconds: int = DEFAULT_DURATION_SECONDS

    async def acquire(self) -> Held:
        """Waits until this replica leads."""
        announced = None
        while True:
            checkpoint()
            taken = await self._try()
            if isinstance(taken, Held):
                log.info("leading as %s (Lease %s)", self.identity, LEASE_NAME)
                return taken
            if taken != announced:
                log.info("standing by: %s leads", taken)
                announced = taken
            await asyncio.sleep(RETRY_SECONDS)

    async def _try(self) -> Held | str:
        try:
            return await self.store.take(LEASE_NAME, self.identity, self.duration_seconds)
        except Exception as error:  # the API server may be restarting: keep trying
            log.warning("could not read the leader Lease: %s", error)
            return "(unknown)"

    async def keep(self, held: Held) -> None:
        """Renews until the leadership is lost (returns) or the task is cancelled."""
        deadline = datetime.now(UTC) + timedelta(seconds=self.duration_seconds)
        while True:
            checkpoint()
            await asyncio.sleep(self.duration_seconds / 3)
            try:
                renewed = await self.store.renew(held)
            except Exception as error:
                log.warning("could not renew the leader Lease: %s", error)
                if datetime.now(UTC) < deadline - timedelta(seconds=self.duration_seconds / 3):
                    continue
                renewed = False
            if not renewed:
                log.critical("lost the leader Lease %s: stopping", LEASE_NAME)
                return
            deadline = datetime.now(UTC) + timedelta(seconds=self.duration_seconds)

    async def release(self, held: Held) -> None:
        try:
            await self.store.release(held.lock, held.holder)
        except Exception as error:
            log.warning("could not release the leader Lease: %s", error)
