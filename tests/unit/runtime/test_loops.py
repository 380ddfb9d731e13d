"""Loops: prompt cancellation in every state, pacing, panic policy, listeners."""

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
    MetricsListener,
    Notify,
    Pacing,
    PanicPolicy,
)
from treadle.runtime.listeners import ERRORS, EXECUTIONS

pytestmark = pytest.mark.looptime


def started() -> Notify:
    notify = Notify()
    notify.notify()
    return notify


async def test_cancellation_is_prompt_during_execute_and_the_action_sees_it() -> None:
    cancel = CancelToken()
    seen = []

    class Slow:
        async def execute(self, token: CancelToken) -> Directive:
            try:
                await asyncio.sleep(HOUR)
            except asyncio.CancelledError:
                seen.append(now())
                raise
            return Directive.idle()

    cancel_after(cancel, 5)
    await Loop("slow", Slow(), cancel, notifiers=[started()]).run()
    assert (now(), seen) == (5, [5])


@pytest.mark.parametrize(
    ("state", "directive"),
    [("idle", Directive.idle()), ("sleep", Directive.sleep(HOUR))],
)
async def test_cancellation_is_prompt_while_waiting(state: str, directive: Directive) -> None:
    cancel = CancelToken()
    action = Recorder(script=lambda _: directive)
    cancel_after(cancel, 5)
    await Loop(state, action, cancel, notifiers=[started()]).run()
    assert (now(), action.calls) == (5, 1)


async def test_cancellation_is_prompt_during_backoff() -> None:
    cancel = CancelToken()

    def fail(_: int) -> Directive:
        raise RuntimeError("down")

    bulkhead = Bulkhead(Backoff(initial_seconds=HOUR, max_seconds=HOUR, jitter=0))
    cancel_after(cancel, 5)
    await Loop(
        "backing-off", Recorder(script=fail), cancel, notifiers=[started()], bulkhead=bulkhead
    ).run()
    assert now() == 5


async def test_cancelling_the_task_stops_the_loop_at_once() -> None:
    loop = Loop(
        "idle", Recorder(script=lambda _: Directive.idle()), CancelToken(), notifiers=[started()]
    )
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert now() == 5


async def test_a_cancelled_token_stops_a_loop_before_it_runs() -> None:
    cancel = CancelToken()
    cancel.cancel()
    action = Recorder(script=lambda _: Directive.proceed())
    await Loop("never", action, cancel, start=Directive.proceed()).run()
    assert action.calls == 0


async def test_pacing_ramps_the_pause_after_consecutive_proceeds_up_to_the_active_interval() -> (
    None
):
    cancel = CancelToken()
    action = Recorder(script=lambda i: Directive.proceed() if i < 6 else Directive.idle())
    pacing = Pacing(active_interval_seconds=1.0, ramp_step_seconds=0.25)
    cancel_after(cancel, 100)
    await Loop("ramp", action, cancel, notifiers=[started()], pacing=pacing).run()
    gaps = [b - a for a, b in zip(action.starts, action.starts[1:], strict=False)]
    assert gaps == [0, 0.25, 0.5, 0.75, 1.0, 1.0]


async def test_the_ramp_starts_again_after_the_loop_idles() -> None:
    cancel = CancelToken()
    notify = Notify()
    script = [
        Directive.proceed(),
        Directive.proceed(),
        Directive.idle(),
        Directive.proceed(),
        Directive.idle(),
    ]
    action = Recorder(script=lambda i: script[i] if i < len(script) else Directive.idle())
    pacing = Pacing(active_interval_seconds=10, ramp_step_seconds=5)
    notify.notify()
    loop = Loop("reset", action, cancel, notifiers=[notify], pacing=pacing)

    async def wake_later() -> None:
        await asyncio.sleep(50)
        notify.notify()

    waker = asyncio.create_task(wake_later())
    cancel_after(cancel, 100)
    await loop.run()
    await waker
    assert action.starts == [0, 0, 5, 50, 50]


async def test_min_interval_spaces_executions_however_often_the_loop_is_woken() -> None:
    cancel = CancelToken()
    notify = Notify()
    action = Recorder(script=lambda _: Directive.idle())
    loop = Loop(
        "floored", action, cancel, notifiers=[notify], pacing=Pacing(min_interval_seconds=10)
    )

    async def storm() -> None:
        for _ in range(50):
            notify.notify()
            await asyncio.sleep(1)

    stormer = asyncio.create_task(storm())
    cancel_after(cancel, 45)
    await loop.run()
    stormer.cancel()
    assert action.starts == [0, 10, 20, 30, 40]


async def test_propagate_policy_ends_the_loop_with_the_actions_exception() -> None:
    def fail(_: int) -> Directive:
        raise KeyError("boom")

    loop = Loop(
        "strict",
        Recorder(script=fail),
        CancelToken(),
        notifiers=[started()],
        panic_policy=PanicPolicy.PROPAGATE,
    )
    with pytest.raises(KeyError):
        await loop.run()


async def test_an_action_that_returns_no_directive_is_an_error_and_the_loop_survives() -> None:
    cancel = CancelToken()
    results: list[object] = [None, Directive.idle()]

    class Sloppy:
        calls = 0

        async def execute(self, token: CancelToken) -> Directive:
            self.calls += 1
            return results[min(self.calls - 1, 1)]  # type: ignore[return-value]

    action = Sloppy()
    cancel_after(cancel, 10)
    bulkhead = Bulkhead(Backoff(initial_seconds=1, jitter=0))
    await Loop("sloppy", action, cancel, notifiers=[started()], bulkhead=bulkhead).run()
    assert action.calls == 2


def test_idle_without_notifiers_is_refused_when_the_loop_is_built() -> None:
    with pytest.raises(ValueError, match="idle needs at least one notifier"):
        Loop("deaf", Recorder(script=lambda _: Directive.idle()), CancelToken())


async def test_the_metrics_listener_counts_executions_errors_and_backoff_seconds() -> None:
    cancel = CancelToken()
    outcomes = [RuntimeError("x"), RuntimeError("y"), Directive.sleep(HOUR)]

    def script(index: int) -> Directive:
        outcome = outcomes[index]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    name = "metered-loop"
    bulkhead = Bulkhead(Backoff(initial_seconds=2, factor=3, max_seconds=100, jitter=0))
    cancel_after(cancel, 60)
    await Loop(
        name,
        Recorder(script=script),
        cancel,
        notifiers=[started()],
        bulkhead=bulkhead,
        listeners=[MetricsListener()],
    ).run()
    assert EXECUTIONS.labels(loop=name)._value.get() == 3
    assert ERRORS.labels(loop=name)._value.get() == 2
    from treadle.runtime.listeners import BACKOFF

    assert BACKOFF.labels(loop=name)._value.get() == 2 + 6


async def test_a_listener_that_raises_does_not_break_the_loop() -> None:
    class Broken:
        def on_start(self, loop: str) -> None:
            raise RuntimeError("listener bug")

        on_directive = on_error = on_stop = on_start  # type: ignore[assignment]

    cancel = CancelToken()
    action = Recorder(script=lambda _: Directive.sleep(1))
    cancel_after(cancel, 3.5)
    await Loop("listened", action, cancel, notifiers=[started()], listeners=[Broken()]).run()
    assert action.calls == 4
