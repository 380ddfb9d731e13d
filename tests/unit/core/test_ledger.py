"""The ledger against every order of events the driver meets (hypothesis): results arrive,
advances fail or succeed, write or put the write off, the working status is replaced by the API
server's, the workflow is tracked anew.  A model of the statuses checks the delivery rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from treadle.core.ledger import Entry, Ledger

Event = tuple[str, bool]


@dataclass
class World:
    """The driver around one workflow, its results being ids: `working` is the status the
    driver holds, `written` the API server's; `acked` the entries acknowledged in Redis."""

    ledger: Ledger[int] = field(default_factory=Ledger)
    working: set[int] = field(default_factory=set)
    written: set[int] = field(default_factory=set)
    acked: set[Entry] = field(default_factory=set)
    arrived: list[int] = field(default_factory=list)
    next_id: int = 0

    def arrive(self) -> None:
        self.next_id += 1
        self.arrived.append(self.next_id)

    def advance(self, *, fails: bool, writes: bool) -> None:
        news, self.arrived = self.arrived, []
        self.ledger.received(("pool", str(i)) for i in news)
        given = self.ledger.take(news)
        if fails:  # the API server or Redis away: nothing of this advance happened
            self.ledger.keep(given)
            return
        applied = self.ledger.to_apply(given)
        base = self.written if self.ledger.replaced else self.working
        self.working = base | set(applied)
        if writes:
            self.written = set(self.working)
            self.acked.update(self.ledger.written())
        else:
            self.ledger.applied(applied)

    def replace(self) -> None:
        """A handler tracked the workflow again: its status is the API server's."""
        self.working = set(self.written)
        self.ledger.replace()

    def track_anew(self) -> None:
        """The run started again around the webhook: a new ledger, carried over."""
        self.working = set(self.written)
        self.ledger = self.ledger.carried_over()


EVENTS = st.lists(
    st.sampled_from(["arrive", "advance", "advance-fails", "advance-no-write", "replace", "anew"]),
    max_size=60,
)


def play(events: list[str]) -> World:
    world = World()
    for event in events:
        if event == "arrive":
            world.arrive()
        elif event == "advance":
            world.advance(fails=False, writes=True)
        elif event == "advance-fails":
            world.advance(fails=True, writes=False)
        elif event == "advance-no-write":
            world.advance(fails=False, writes=False)
        elif event == "replace":
            world.replace()
        else:
            world.track_anew()
    return world


@settings(max_examples=400)
@given(EVENTS)
def test_no_result_is_acknowledged_before_a_write_that_records_it(events: list[str]) -> None:
    world = play(events)
    assert {int(entry) for _, entry in world.acked} <= world.written


@settings(max_examples=400)
@given(EVENTS)
def test_no_result_is_lost_whatever_fails_or_is_replaced(events: list[str]) -> None:
    world = play(events)
    world.advance(fails=False, writes=True)  # the next advance that writes
    received = set(range(1, world.next_id + 1))
    assert world.written == received
    assert {int(entry) for _, entry in world.acked} == received
    assert world.ledger.unacked == []


def test_an_attempt_enqueued_before_a_failed_write_is_not_enqueued_again() -> None:
    ledger: Ledger[int] = Ledger()
    assert ledger.fresh([("k", 1), ("j", 1)]) == [("k", 1), ("j", 1)]
    ledger.enqueued_now([("k", 1), ("j", 1)])
    assert ledger.fresh([("k", 1), ("j", 1), ("k", 2)]) == [("k", 2)]
    ledger.written()
    assert ledger.fresh([("k", 1)]) == [("k", 1)]


def test_a_forgotten_workflows_entries_are_handed_back_once() -> None:
    ledger: Ledger[int] = Ledger()
    ledger.received([("p", "1"), ("p", "2")])
    assert ledger.abandoned() == [("p", "1"), ("p", "2")]
    assert ledger.abandoned() == []
