"""The worker-runtime scenarios of the seed document, each on virtual time (looptime)."""

from __future__ import annotations

import asyncio

import pytest

from support.loops import HOUR, Recorder, cancel_after, now
from treadle.runtime import (
    Backoff,
    Bulkhead,
    CancelToken,
    Directive,
    Loop,
    Notify,
    PanicPolicy,
    TaskSet,
    poker,
)

pytestmark = pytest.mark.looptime


async def test_scenario_long_interval_worker_reschedules_immediately_when_work_overruns() -> None:
    cancel = CancelToken()
    work = [2 * HOUR, 5 * HOUR, 1 * HOUR]
    threshold = 4 * HOUR
    action = Recorder(
        script=lambda i: Directive.proceed() if i < 3 and work[i] > threshold else Directive.idle(),
        work_seconds=lambda i: work[i] if i < 3 else 0.001,
    )
    poke_notify, _ = poker(4 * HOUR, cancel)
    loop = Loop("batch-processor", action, cancel, notifiers=[poke_notify])
    cancel_after(cancel, 16 * HOUR)
    await loop.run()
    assert action.calls >= 3
    # Call 2 (the overrun) ran 8 h..13 h; call 3 started at once, not at the next poke.
    assert action.starts[:3] == [4 * HOUR, 8 * HOUR, 13 * HOUR]
    assert now() < 17 * HOUR


async def test_scenario_event_driven_worker_is_woken_by_notifiers_long_before_its_poker() -> None:
    cancel = CancelToken()
    events = Notify()
    action = Recorder(script=lambda _: Directive.idle())
    poke_notify, _ = poker(5 * HOUR, cancel)
    loop = Loop("event-worker", action, cancel, notifiers=[poke_notify, events])
    events.notify()  # a stored permit: the initial idle ends at once

    async def produce() -> None:
        await asyncio.sleep(HOUR)
        events.notify()
        await asyncio.sleep(HOUR)
        events.notify()

    producer = asyncio.create_task(produce())
    cancel_after(cancel, 4 * HOUR)
    await loop.run()
    await producer
    assert action.starts == [0, HOUR, 2 * HOUR]
    assert now() < 5 * HOUR


async def test_scenario_transient_errors_back_off_1_2_4_then_a_success_resets_to_1() -> None:
    cancel = CancelToken()
    outcomes: list[Directive | None] = [
        None,
        None,
        None,
        Directive.proceed(),
        None,
        Directive.sleep(HOUR),
    ]

    def script(index: int) -> Directive:
        outcome = outcomes[index] if index < len(outcomes) else Directive.sleep(HOUR)
        if outcome is None:
            raise ConnectionError("db timeout")
        return outcome

    action = Recorder(script=script)
    notify = Notify()
    notify.notify()
    bulkhead = Bulkhead(Backoff(initial_seconds=1, max_seconds=HOUR, factor=2, jitter=0))
    loop = Loop("flaky-worker", action, cancel, notifiers=[notify], bulkhead=bulkhead)
    cancel_after(cancel, HOUR)
    await loop.run()
    assert action.calls == 6
    # Errors at 0, 1, 3 back off 1 s, 2 s, 4 s; the success at 7 proceeds; the error at 7 backs
    # off 1 s again (not 8 s); the sixth call runs at 8.
    assert action.starts == [0, 1, 3, 7, 7, 8]


async def test_scenario_any_of_three_notifiers_wakes_the_worker() -> None:
    cancel = CancelToken()
    source_a, source_b, source_c = Notify(), Notify(), Notify()
    action = Recorder(script=lambda _: Directive.idle())
    source_a.notify()
    loop = Loop("multi-source", action, cancel, notifiers=[source_a, source_b, source_c])

    async def produce() -> None:
        for source in (source_b, source_c, source_a):
            await asyncio.sleep(HOUR)
            source.notify()

    producer = asyncio.create_task(produce())
    cancel_after(cancel, 6 * HOUR)
    await loop.run()
    await producer
    assert action.starts == [0, HOUR, 2 * HOUR, 3 * HOUR]


async def test_scenario_four_workers_sharing_a_semaphore_of_two_never_run_more_than_two() -> None:
    notify = Notify()
    shared = asyncio.Semaphore(2)
    running = high_water = calls = 0

    class Processor:
        async def execute(self, cancel: CancelToken) -> Directive:
            nonlocal running, high_water, calls
            calls += 1
            running += 1
            high_water = max(high_water, running)
            await asyncio.sleep(30)
            running -= 1
            return Directive.idle()

    tasks = TaskSet()
    for worker in range(4):
        bulkhead = Bulkhead(Backoff(jitter=0), semaphore=shared)
        loop = Loop(
            f"processor-{worker}", Processor(), tasks.cancel, notifiers=[notify], bulkhead=bulkhead
        )
        tasks.spawn(loop.name, loop.run())

    async def produce() -> None:
        for _ in range(8):
            notify.notify()
            await asyncio.sleep(5)

    producer = asyncio.create_task(produce())
    await asyncio.sleep(300)
    assert await tasks.shutdown() == []
    await producer
    assert calls >= 4
    assert high_water == 2
    assert tasks.crashes == []


async def test_scenario_vacuum_worker_with_no_events_self_schedules_with_sleep() -> None:
    cancel = CancelToken()
    action = Recorder(script=lambda _: Directive.sleep(HOUR))
    poke_notify, _ = poker(600, cancel)
    loop = Loop("vacuum", action, cancel, notifiers=[poke_notify])
    cancel_after(cancel, 4 * HOUR)
    await loop.run()
    assert action.starts[:3] == [600, 600 + HOUR, 600 + 2 * HOUR]


class PanicsOnFirstCall:
    def __init__(self) -> None:
        self.calls = 0

    async def execute(self, cancel: CancelToken) -> Directive:
        self.calls += 1
        if self.calls == 1:
            raise AssertionError("segfault in row processor")
        return Directive.idle()


async def test_scenario_panicking_worker_recovers_and_keeps_running() -> None:
    cancel = CancelToken()
    action = PanicsOnFirstCall()
    poke_notify, _ = poker(1, cancel)
    loop = Loop(
        "bad", action, cancel, notifiers=[Notify(), poke_notify], panic_policy=PanicPolicy.CATCH
    )
    runner = asyncio.create_task(loop.run())
    await asyncio.sleep(10)
    cancel.cancel()
    await runner
    assert action.calls > 1


async def test_scenario_panicking_worker_does_not_kill_its_sibling() -> None:
    tasks = TaskSet()
    bad = PanicsOnFirstCall()
    good = Recorder(script=lambda _: Directive.idle())
    shared = Notify()
    bad_poker, _ = poker(1, tasks.cancel)
    good_poker, _ = poker(1, tasks.cancel)
    tasks.spawn("bad", Loop("bad", bad, tasks.cancel, notifiers=[shared, bad_poker]).run())
    tasks.spawn("good", Loop("good", good, tasks.cancel, notifiers=[shared, good_poker]).run())
    await asyncio.sleep(10)
    assert tasks.running == ["bad", "good"]
    assert await tasks.shutdown() == []
    assert bad.calls > 1
    assert good.calls >= 1
    assert tasks.crashes == []
