"""One workflow's ledger of results: received, applied, written, acknowledged.

The rule that makes delivery safe: a result's stream entry is acknowledged only once a status
write records the result's effect.  Until then the entry stays pending in Redis, and an operator
that dies reads it again (the engine ignores what it applied already).  In between, this ledger
keeps what the driver must not lose:

- `unacked`: the entries of results given to the workflow since its last write;
- `unwritten`: the results applied to the working status but not written yet, applied again
  when that status is replaced by the API server's (`replace`), which lacks them;
- `retained`: the results of an advance that failed (the API server or Redis away), given to
  the next one;
- `enqueued`: the attempts an advance enqueued before its write, so that an advance tried again
  from the same status does not enqueue them twice.

Pure: the driver calls it around each advance (controllers/driver.py), and a hypothesis test
(tests/unit/core/test_ledger.py) checks the rule against every order of events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Entry = tuple[str, str]
"""A result's stream entry: (pool, entry id)."""
Attempt = tuple[str, int]
"""An enqueued attempt: (idempotency key, attempt)."""
R = TypeVar("R")


@dataclass
class Ledger(Generic[R]):
    unacked: list[Entry] = field(default_factory=list)
    unwritten: list[R] = field(default_factory=list)
    retained: list[R] = field(default_factory=list)
    enqueued: set[Attempt] = field(default_factory=set)
    replaced: bool = True
    """The working status is the API server's: what was applied since the last write is not
    in it (a workflow tracked anew starts so)."""

    def received(self, entries: Iterable[Entry]) -> None:
        """Results read from the streams for this workflow: acknowledged after a write."""
        self.unacked.extend(entries)

    def take(self, results: Sequence[R]) -> list[R]:
        """The results to give the next advance: those a failed advance kept, then `results`."""
        given, self.retained = [*self.retained, *results], []
        return given

    def keep(self, given: Sequence[R]) -> None:
        """The advance failed (or was put off): its results go to the next one."""
        self.retained = [*given, *self.retained]

    def to_apply(self, given: Sequence[R]) -> list[R]:
        """What the engine applies: the unwritten results again when the working status was
        replaced (they are not in it), then `given`."""
        return [*(self.unwritten if self.replaced else []), *given]

    def fresh(self, attempts: Iterable[Attempt]) -> list[Attempt]:
        """The attempts not enqueued yet since the last write."""
        return [attempt for attempt in attempts if attempt not in self.enqueued]

    def enqueued_now(self, attempts: Iterable[Attempt]) -> None:
        self.enqueued.update(attempts)

    def written(self) -> list[Entry]:
        """A status write recorded everything applied: returns the entries now safe to
        acknowledge."""
        acked, self.unacked, self.unwritten = self.unacked, [], []
        self.enqueued.clear()
        self.replaced = False
        return acked

    def applied(self, applied: Sequence[R]) -> None:
        """An advance applied `applied` (what `to_apply` returned, and results of its own) and
        did not write: they are kept to apply again should the status be replaced."""
        self.unwritten = [*applied] if self.replaced else [*self.unwritten, *applied]
        self.replaced = False

    def replace(self) -> None:
        """The working status was replaced by the API server's."""
        self.replaced = True

    def carried_over(self) -> Ledger[R]:
        """The ledger of the same workflow tracked anew (a run started again): its status is
        the API server's, so everything unwritten is applied again; nothing is acknowledged."""
        return Ledger(
            unacked=list(self.unacked),
            unwritten=list(self.unwritten),
            retained=list(self.retained),
            replaced=True,
        )

    def abandoned(self) -> list[Entry]:
        """The workflow is gone: its entries are acknowledged without a write (nothing will
        apply them)."""
        abandoned, self.unacked = self.unacked, []
        return abandoned
