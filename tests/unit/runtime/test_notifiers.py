"""Notifiers keep one permit, wake one waiter, and hand on a wake-up they could not deliver."""

from __future__ import annotations

import asyncio

import pytest

from support.loops import now
from treadle.runtime import CancelToken, Notify, poker, wait_any

pytestmark = pytest.mark.looptime


async def test_a_notify_with_no_waiter_is_kept_for_the_next_wait() -> None:
    notify = Notify()
    notify.notify()
    await asyncio.wait_for(notify.wait(), timeout=1)
    assert now() == 0


async def test_several_notifies_before_a_wait_collapse_into_one() -> None:
    notify = Notify()
    for _ in range(3):
        notify.notify()
    await notify.wait()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(notify.wait(), timeout=5)


async def test_a_notify_wakes_one_waiter_and_stores_nothing() -> None:
    notify = Notify()
    first = asyncio.create_task(notify.wait())
    second = asyncio.create_task(notify.wait())
    await asyncio.sleep(0)
    notify.notify()
    done, pending = await asyncio.wait({first, second}, timeout=1)
    assert (len(done), len(pending)) == (1, 1)
    notify.notify()
    await asyncio.wait_for(pending.pop(), timeout=1)


async def test_waiting_on_several_notifiers_leaves_the_others_permits_alone() -> None:
    a, b = Notify(), Notify()
    a.notify()
    b.notify()
    assert await wait_any([a, b]) is a
    assert await wait_any([a, b]) is b


async def test_notify_waiters_wakes_everyone_without_a_permit() -> None:
    notify = Notify()
    waiters = [asyncio.create_task(notify.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    notify.notify_waiters()
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(notify.wait(), timeout=1)


async def test_a_wake_up_that_races_a_cancellation_is_handed_on() -> None:
    notify = Notify()
    doomed = asyncio.create_task(notify.wait())
    await asyncio.sleep(0)
    notify.notify()  # resolves doomed's waiter...
    doomed.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await asyncio.wait_for(notify.wait(), timeout=1)  # the permit was kept


async def test_a_poker_notifies_at_its_interval_until_cancelled() -> None:
    cancel = CancelToken()
    notify, task = poker(10, cancel)
    wakes = []
    for _ in range(3):
        await notify.wait()
        wakes.append(now())
    cancel.cancel()
    await task
    assert wakes == [10, 20, 30]


def test_a_poker_needs_a_positive_interval() -> None:
    from treadle.runtime import poke

    with pytest.raises(ValueError, match="positive"):
        asyncio.run(poke(Notify(), 0, CancelToken()))
