"""The task queue and the worker against a real Redis: delivery, idempotency, the reaper."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import REGISTRY

from support import loops
from support.redis_server import RedisServer
from treadle.core import tasklogs
from treadle.core.messages import TaskMessage, TaskResult, TaskStart, decode_report
from treadle.runtime import CancelToken
from treadle.services import keys, queues
from treadle.services.guards import Guards
from treadle.services.results import QueueDepth, ResultStream
from treadle.worker.serving import Reaper, TaskWorker, WorkerOptions, serve

POOL = "test-pool"
RESULTS = keys.results_stream(POOL)
SERVED: dict[str, dict[str, set[str] | None]] = {POOL: {"u": None, "uid-1": None}}


async def queue_for(client: aioredis.Redis, consumer: str) -> queues.TaskQueue:
    queue = queues.TaskQueue(client, POOL, consumer)
    await queue.ensure_groups()
    return queue


def command(task: str, *args: str, item: int | None = None, uid: str = "uid-1") -> TaskMessage:
    return TaskMessage(uid, "ns/wf", task, item, 1, {"command": {"args": list(args)}}, 10)


def counting(task: str, log: Path) -> TaskMessage:
    """A task whose every execution appends a line to `log` (the side-effect log)."""
    return command(task, "sh", "-c", f'echo {task} >> {log}; echo \'{{"ran": "{task}"}}\'')


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def results(client: aioredis.Redis) -> list[TaskResult]:
    """The results on the stream (not the starts of long attempts)."""
    entries = await client.xrange(RESULTS)
    return [TaskResult.decode(fields) for _, fields in entries if "started" not in fields]


async def output_of(client: aioredis.Redis, result: TaskResult) -> Any:
    """The output as the operator sees it: the copy, or else the stored one (a forEach
    child's output comes only stored)."""
    if result.output is not None or result.output_ref is None:
        return result.output
    return json.loads(await client.get(result.output_ref))


async def test_a_worker_runs_a_batch_and_publishes_each_result(client: aioredis.Redis) -> None:
    queue = await queue_for(client, "w1")
    await queue.enqueue([command(f"t{i}", "echo", f'{{"n": {i}}}', item=i) for i in range(3)])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    published = await results(client)
    # A forEach child's output travels only as its stored copy (status never inlines it).
    stored = await ResultStream(client, "operator").load_outputs(
        {r.task: r.output_ref for r in published if r.output_ref}, limit_bytes=1 << 20
    )
    assert {r.output for r in published} == {None}
    assert sorted((r.task, r.outcome, stored[r.task]["n"]) for r in published) == [
        ("t0", "succeeded", 0),
        ("t1", "succeeded", 1),
        ("t2", "succeeded", 2),
    ]
    assert await client.xpending(queue.stream, queues.WORKERS_GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_each_result_is_published_as_its_attempt_ends_not_with_the_slowest(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    queue = await queue_for(client, "w1")
    wait = f"while [ ! -e {release} ]; do sleep 0.02; done"
    await queue.enqueue([command("slow", "sh", "-c", wait), command("quick", "echo", "1")])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    assert await client.xread({RESULTS: "0"}, count=1, block=5000)  # the first result
    assert [r.task for r in await results(client)] == ["quick"]  # the slow one still runs
    pending = await client.xpending(queue.stream, queues.WORKERS_GROUP)
    assert pending["pending"] == 1  # and only its message is still unacknowledged
    release.touch()
    await worker.settle()
    await worker.close()
    assert sorted(r.task for r in await results(client)) == ["quick", "slow"]


async def test_a_failing_command_reports_the_exit_code_and_stderr(client: aioredis.Redis) -> None:
    queue = await queue_for(client, "w1")
    await queue.enqueue([command("bad", "sh", "-c", "echo oops >&2; exit 4")])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    [result] = await results(client)
    assert (result.outcome, result.error) == ("failed", "exit code 4: oops")
    assert result.details == {"cause": "exit", "exitCode": 4}  # what retry.on judges by


async def test_python_callables_run_sync_and_async_and_failures_are_results(
    client: aioredis.Redis,
) -> None:
    queue = await queue_for(client, "w1")
    calls = [
        ("add", {"callable": "support.tasks:add", "kwargs": {"a": 2, "b": 3}}),
        ("greet", {"callable": "support.tasks:greet", "kwargs": {"name": "ada"}}),
        ("explode", {"callable": "support.tasks:explode"}),
        ("missing", {"callable": "support.nowhere:run"}),
    ]
    await queue.enqueue(
        [TaskMessage("u", "ns/wf", name, None, 1, {"python": spec}, 10) for name, spec in calls]
    )
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    by_task = {r.task: r for r in await results(client)}
    assert by_task["add"].output == {"sum": 5}
    assert by_task["greet"].output == "hello ada"
    assert by_task["explode"].error == "RuntimeError: kaboom"
    assert by_task["explode"].details == {
        "cause": "exception",
        "exceptions": ["RuntimeError", "Exception", "BaseException"],
    }
    assert by_task["missing"].error.startswith("cannot import support.nowhere:run")


async def test_http_tasks_send_the_idempotency_key_and_return_the_json_body(
    client: aioredis.Redis,
) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Idempotency-Key"])
        if request.path == "/down":
            return web.Response(status=503, text="maintenance", headers={"Retry-After": "7"})
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        queue = await queue_for(client, "w1")
        await queue.enqueue(
            [
                TaskMessage(
                    "u", "ns/wf", "up", 7, 1, {"http": {"url": f"http://127.0.0.1:{port}/users"}}, 5
                ),
                TaskMessage(
                    "u",
                    "ns/wf",
                    "down",
                    None,
                    1,
                    {"http": {"url": f"http://127.0.0.1:{port}/down"}},
                    5,
                ),
            ]
        )
        worker = TaskWorker(queue, block_ms=100)
        await worker.execute(CancelToken())
        await worker.settle()
        await worker.close()
    finally:
        await runner.cleanup()
    by_task = {r.task: r for r in await results(client)}
    assert await output_of(client, by_task["up"]) == {"path": "/users"}
    assert by_task["down"].error == "503 from 127.0.0.1: maintenance"
    assert by_task["down"].details == {"cause": "httpStatus", "status": 503, "retryAfter": 7.0}
    assert sorted(seen) == ["u/down/-", "u/up/7"]


async def test_a_killed_consumers_message_is_reaped_and_completed_once(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    side_effects = tmp_path / "ran.log"
    dead = await queue_for(client, "dead-worker")
    await dead.enqueue([counting("fetch", side_effects)])
    [lost] = await dead.read(10, 100)  # delivered to a worker that then dies
    reaper = Reaper(await queue_for(client, "reaper"), idle_seconds=0)
    redelivered = sample("treadle_reaped_messages_total", fate="redelivered")
    await reaper.execute(CancelToken())
    assert sample("treadle_reaped_messages_total", fate="redelivered") == redelivered + 1
    survivor = TaskWorker(await queue_for(client, "survivor"), block_ms=100)
    await survivor.execute(CancelToken())
    await survivor.settle()
    await survivor.close()
    # The dead worker comes back and reports the same attempt late: nothing is published twice.
    late = TaskResult("uid-1", "ns/wf", "fetch", None, 1, "succeeded", {"ran": "fetch"})
    assert await dead.finish([(lost, late)]) == [False]
    assert side_effects.read_text().splitlines() == ["fetch"]
    assert [r.task for r in await results(client)] == ["fetch"]


async def test_a_poison_message_is_dead_lettered_after_the_redelivery_limit(
    client: aioredis.Redis,
) -> None:
    queue = await queue_for(client, "doomed")
    await queue.enqueue([command("poison", "true")])
    reports = []
    for _ in range(3):  # each time, the worker that took it dies before finishing
        assert len(await queue.read(10, 100)) == 1
        reports.append(await queue.reap(0, max_redeliveries=2))
    assert [(r.republished, r.dead_lettered) for r in reports] == [(1, 0), (1, 0), (0, 1)]
    [letter] = await queue.dead_letters()
    assert letter["task"] == "poison"
    assert letter["reason"] == "poison: its worker went silent 3 times"
    assert await queue.read(10, 100) == []
    # The operator hears of it as a failed attempt, to retry or dead-letter by the task's policy.
    [failed] = await results(client)
    assert failed == TaskResult(
        "uid-1",
        "ns/wf",
        "poison",
        None,
        1,
        "failed",
        error="poison: its worker went silent 3 times",
        finished_at=failed.finished_at,
    )
    assert failed.key == "uid-1/poison/-"
    assert failed.finished_at > 0


async def test_a_redelivered_message_whose_key_succeeded_is_not_executed_again(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    side_effects = tmp_path / "ran.log"
    skipped_before = sample("treadle_worker_duplicates_skipped_total")
    queue = await queue_for(client, "w1")
    worker = TaskWorker(queue, block_ms=100)
    await queue.enqueue([counting("once", side_effects)])
    await worker.execute(CancelToken())
    await worker.settle()
    await queue.enqueue([counting("once", side_effects)])  # the same attempt, delivered again
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    assert side_effects.read_text().splitlines() == ["once"]
    assert (worker.executed, worker.skipped) == (1, 1)
    assert sample("treadle_worker_duplicates_skipped_total") == skipped_before + 1
    assert len(await results(client)) == 1


async def test_messages_kept_alive_by_their_worker_are_not_reaped(client: aioredis.Redis) -> None:
    queue = await queue_for(client, "busy")
    await queue.enqueue([command("slow", "true")])
    deliveries = await queue.read(10, 100)
    await queue.keep_alive(deliveries)
    assert await queue.reap(60_000, 3) == queues.ReapReport(0, 0)


async def test_the_worker_process_serves_its_pool_until_stopped(
    client: aioredis.Redis, redis_server_process: RedisServer
) -> None:
    stop = asyncio.Event()
    options = WorkerOptions(redis_server_process.url, POOL, "served", reap_idle_seconds=25)
    serving = asyncio.create_task(serve(options, stop))
    queue = await queue_for(client, "producer")
    await queue.enqueue([command(f"t{i}", "echo", str(i), item=i) for i in range(20)])
    seen: list[TaskResult] = []
    last = "0"
    while len(seen) < 20:
        reply = await client.xread({RESULTS: last}, block=10_000)
        assert reply, "no result within 10 s"
        for entry_id, fields in reply[0][1]:
            seen.append(TaskResult.decode(fields))
            last = entry_id
    stop.set()
    await asyncio.wait_for(serving, 30)
    assert sorted([await output_of(client, r) for r in seen]) == list(range(20))
    assert json.dumps(seen[0].encode())


async def test_an_open_breaker_fails_tasks_fast_without_running_them(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    side_effects = tmp_path / "ran.log"
    target = {"target": "task:flaky"}
    before = [
        sample(n, **target)
        for n in ("treadle_circuit_breaker_opened_total", "treadle_circuit_breaker_fail_fast_total")
    ]
    failed_before = sample("treadle_worker_task_attempts_total", action="command", outcome="failed")
    guards = Guards(client)
    queue = await queue_for(client, "w1")
    settings = {"circuitBreaker": {"failureThreshold": 2, "openSeconds": 3600}}
    failing = [
        TaskMessage(
            "u", "ns/wf", "flaky", i, 1, {"command": {"args": ["false"]}}, 5, guards=settings
        )
        for i in range(2)
    ]
    await queue.enqueue(failing)
    worker = TaskWorker(queue, block_ms=100, guards=guards)
    await worker.execute(CancelToken())
    await worker.settle()
    guarded = counting("flaky", side_effects)
    await queue.enqueue(
        [
            TaskMessage(
                guarded.workflow_uid,
                guarded.workflow,
                "flaky",
                9,
                1,
                guarded.action,
                5,
                guards=settings,
            )
        ]
    )
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    last = (await results(client))[-1]
    assert (last.item, last.outcome, last.error) == (
        9,
        "failed",
        "circuit open for task:flaky: failing fast",
    )
    assert not side_effects.exists()
    after = [
        sample(n, **target)
        for n in ("treadle_circuit_breaker_opened_total", "treadle_circuit_breaker_fail_fast_total")
    ]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]
    failed = sample("treadle_worker_task_attempts_total", action="command", outcome="failed")
    assert failed == failed_before + 2  # the fail-fast attempt never ran


async def test_a_rate_limited_task_waits_for_its_token(client: aioredis.Redis) -> None:
    queue = await queue_for(client, "w1")
    limited = {"rateLimit": {"perSecond": 20, "burst": 1}}
    await queue.enqueue(
        [
            TaskMessage(
                "u", "ns/wf", "paced", i, 1, {"command": {"args": ["true"]}}, 5, guards=limited
            )
            for i in range(3)
        ]
    )
    worker = TaskWorker(queue, block_ms=100, guards=Guards(client), concurrency=1)
    while worker.executed < 3:  # one slot: one message at a time
        await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    published = sorted(await results(client), key=lambda r: r.started_at)
    assert [r.outcome for r in published] == ["succeeded"] * 3
    assert published[-1].started_at - published[0].started_at >= 0.09


async def test_a_header_from_a_secret_missing_in_the_worker_fails_loudly(
    client: aioredis.Redis,
) -> None:
    queue = await queue_for(client, "w1")
    header = {
        "name": "Authorization",
        "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}},
    }
    action = {"http": {"url": "http://127.0.0.1:9/x", "headers": [header]}}
    await queue.enqueue([TaskMessage("u", "ns/wf", "call", None, 1, action, 5)])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    [result] = await results(client)
    assert result.error == (
        "header Authorization: key 'token' of Secret 'api' is neither in this worker's "
        "environment nor mounted in it"
    )


async def test_the_operator_sees_how_much_work_waits_and_runs(client: aioredis.Redis) -> None:
    stream = ResultStream(client, "operator")
    await stream.ensure_marker()
    queue = await queue_for(client, "w1")
    await queue.enqueue([command(f"t{i}", "true", item=i) for i in range(3)])
    await queue.read(1, 100)
    depth = await stream.depth([POOL, "a-pool-with-no-stream"])
    assert depth == QueueDepth(waiting=2, in_flight=1, results=0, poison=0)


async def test_every_output_is_stored_and_a_small_one_also_travels_as_a_copy(
    client: aioredis.Redis,
) -> None:
    queue = await queue_for(client, "w1")
    big = json.dumps({"rows": ["x" * 100] * 100})
    await queue.enqueue([command("big", "echo", big), command("small", "echo", '{"n": 1}')])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    by_task = {r.task: r for r in await results(client)}
    assert by_task["small"].output == {"n": 1}
    assert by_task["small"].output_ref == "treadle:pool:test-pool:wf:uid-1:out:small:-"
    ref = by_task["big"].output_ref
    assert ref == "treadle:pool:test-pool:wf:uid-1:out:big:-"
    assert by_task["big"].output is None
    assert 0 < await client.ttl(ref) <= queues.OUTPUT_TTL_SECONDS
    stream = ResultStream(client, "operator")
    small = by_task["small"].output_ref
    refs = {"big": ref, "small": small, "gone": "treadle:x:gone"}
    loaded = await stream.load_outputs(refs, limit_bytes=1 << 20)
    assert loaded == {"big": json.loads(big), "small": {"n": 1}}
    # Outputs larger together than the bound are not loaded at all (their readers fail).
    assert await stream.load_outputs(refs, limit_bytes=len(big) - 1) == {}


async def test_a_restarted_operator_reads_its_unacknowledged_results_once_then_new_ones(
    client: aioredis.Redis,
) -> None:
    first = ResultStream(client, "operator")
    await first.ensure_marker()
    published = [TaskResult("u", "ns/wf", f"t{i}", None, 1, "succeeded", i) for i in range(3)]
    for result in published:
        await client.xadd(RESULTS, result.encode())
    assert await first.read(SERVED, 10, 100) == []  # a fresh operator has no backlog
    assert len(await first.read(SERVED, 10, 100)) == 3  # read, not acknowledged: the operator dies
    again = ResultStream(client, "operator")
    backlog = await again.read(SERVED, 2, 100)
    backlog += await again.read(SERVED, 2, 100)
    assert [r.result.task for r in backlog] == ["t0", "t1", "t2"]
    await client.xadd(RESULTS, TaskResult("u", "ns/wf", "t3", None, 1, "succeeded").encode())
    assert [r.result.task for r in await again.read(SERVED, 10, 100)] == []  # the backlog ends here
    assert [r.result.task for r in await again.read(SERVED, 10, 100)] == ["t3"]


async def test_after_a_failed_pass_the_operator_reads_what_it_had_not_acknowledged_again(
    client: aioredis.Redis,
) -> None:
    stream = ResultStream(client, "operator")
    await stream.ensure_marker()
    assert await stream.read(SERVED, 10, 100) == []
    for i in range(3):
        await client.xadd(RESULTS, TaskResult("u", "ns/wf", f"t{i}", None, 1, "succeeded").encode())
    read = await stream.read(SERVED, 10, 100)
    await stream.ack({POOL: [read[0].id]})  # t0 was written; the pass failed before t1 and t2
    stream.read_backlog_again()
    assert [r.result.task for r in await stream.read(SERVED, 10, 100)] == ["t1", "t2"]
    assert await stream.read(SERVED, 10, 100) == []  # the backlog ends, new results follow
    await client.xadd(RESULTS, TaskResult("u", "ns/wf", "t3", None, 1, "succeeded").encode())
    assert [r.result.task for r in await stream.read(SERVED, 10, 100)] == ["t3"]


async def test_lost_data_is_noticed_even_when_a_worker_made_the_groups_again_first(
    client: aioredis.Redis,
) -> None:
    stream = ResultStream(client, "operator")
    assert await stream.ensure_marker()  # a new Redis: in-flight work is enqueued again
    assert await stream.intact()
    assert not await stream.ensure_marker()  # an operator restart: nothing was lost
    await client.flushdb()
    await queues.TaskQueue(client, "p", "worker").ensure_groups()  # a worker got there first
    assert not await stream.intact()
    assert await stream.ensure_marker()
    assert await stream.intact()


@pytest.mark.parametrize(
    "junk",
    [
        {"junk": "x"},  # issue #13, problem 4: one XADD of this stalled every workflow
        {"result": "not json"},
        {"result": "[1, 2]"},
        {"result": json.dumps({"workflow_uid": "u", "task": "t"})},
        {
            "result": json.dumps(
                {**TaskResult("u", "ns/wf", "t", None, 1, "succeeded").__dict__, "outcome": "won"}
            )
        },
        {
            "key": "u/other/-",
            "result": json.dumps(TaskResult("u", "ns/wf", "t", None, 1, "succeeded").__dict__),
        },
    ],
)
async def test_an_entry_that_is_no_result_is_set_aside_and_the_results_behind_it_flow(
    client: aioredis.Redis, junk: dict[str, str]
) -> None:
    stream = ResultStream(client, "operator")
    await stream.ensure_marker()
    assert await stream.read(SERVED, 10, 1) == []  # its own backlog: none yet
    await client.xadd(RESULTS, junk)  # what any task's code could write
    good = TaskResult("u", "ns/wf", "t", None, 1, "succeeded", {"n": 1})
    await client.xadd(RESULTS, good.encode())  # type: ignore[arg-type]
    read = await stream.read(SERVED, 10, 100)
    assert [received.result for received in read] == [good]
    assert stream.set_aside == 1
    [(_, rejected)] = await client.xrange(keys.REJECTED)
    assert rejected["reason"].startswith("not a task result")
    assert rejected["stream"] == RESULTS
    assert await client.xlen(RESULTS) == 1  # the junk is gone from the results stream
    assert await stream.read(SERVED, 10, 1) == []  # and is not read again


async def test_a_task_message_that_is_no_message_is_set_aside_and_the_worker_goes_on(
    client: aioredis.Redis,
) -> None:
    queue = await queue_for(client, "w1")
    await client.xadd(queue.stream, {"junk": "x"})
    await queue.enqueue([command("t", "echo", '{"n": 1}')])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    assert [(r.task, r.outcome) for r in await results(client)] == [("t", "succeeded")]
    [(_, rejected)] = await client.xrange(keys.pool_rejected(POOL))
    assert rejected["stream"] == queue.stream
    assert rejected["reason"].startswith("not a task message")


async def test_an_action_that_cannot_start_fails_its_attempt_with_the_reason(
    client: aioredis.Redis,
) -> None:
    """A NUL in an argument took the 75 s poison path (issue #13, problem 6)."""
    queue = await queue_for(client, "w1")
    await queue.enqueue([command("nul", "echo", "a\x00b")])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    [result] = await results(client)
    assert (result.outcome, result.error) == ("failed", "ValueError: embedded null byte")
    assert await client.xlen(queue.stream) == 0  # acknowledged, not left for the reaper


async def test_an_output_over_the_bound_fails_its_attempt_while_it_is_read(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    """A command printing without end is stopped at the bound, not read into memory whole."""
    queue = await queue_for(client, "w1")
    endless = command("endless", "sh", "-c", "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
    await queue.enqueue([endless])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    [result] = await results(client)
    assert (result.outcome, result.error) == (
        "failed",
        "output too large: more than 1048576 bytes",
    )


async def test_a_finished_workflows_keys_are_deleted(client: aioredis.Redis) -> None:
    """Idempotency records, the dedicated pool's stream and large outputs went nowhere
    (issue #13, problem 5): they are deleted with the workflow."""
    queue = await queue_for(client, "w1")
    big = json.dumps({"rows": ["x" * 100] * 100})
    await queue.enqueue([command("big", "echo", big), command("small", "echo", "1")])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    done, outputs = keys.done_hash(POOL, "uid-1"), keys.outputs_index(POOL, "uid-1")
    assert await client.exists(done, outputs) == 2
    stream = ResultStream(client, "operator")
    await stream.forget_workflow("uid-1", POOL, outputs=True, logs=True)
    # what is left is the mark that drops its attempts still queued, which expires
    assert await client.keys("treadle:pool:test-pool:*") == [keys.cancel_hash(POOL, "uid-1")]
    assert 0 < await client.ttl(keys.cancel_hash(POOL, "uid-1")) <= keys.CANCEL_TTL_SECONDS


async def test_a_result_for_a_workflow_its_pool_does_not_serve_is_set_aside(
    client: aioredis.Redis,
) -> None:
    """Issue #13, problem 4: a task's code could forge a result for any workflow.  Its pool's
    stream is the only one it can write, and that stream counts only for its own workflows."""
    stream = ResultStream(client, "operator")
    assert await stream.read(SERVED, 10, 1) == []
    forged = TaskResult("another-workflow", "ns/other", "t", None, 1, "succeeded", {"n": 1})
    await client.xadd(RESULTS, forged.encode())  # type: ignore[arg-type]
    good = TaskResult("u", "ns/wf", "t", None, 1, "succeeded", {"n": 1})
    await client.xadd(RESULTS, good.encode())  # type: ignore[arg-type]
    read = await stream.read(SERVED, 10, 100)
    assert [received.result for received in read] == [good]
    assert stream.set_aside == 1
    [(_, rejected)] = await client.xrange(keys.REJECTED)
    assert rejected["reason"] == (
        "a result for workflow another-workflow in the stream of pool test-pool, "
        "which does not serve it"
    )


async def test_a_pool_finishes_only_its_own_tasks_and_a_shared_pools_streams_outlive_a_workflow(
    client: aioredis.Redis,
) -> None:
    """A workflow spanning two pools: its `gpu` pool runs task `train` only, so a result for
    `load` from that pool's stream is set aside; finishing the workflow deletes its keys but
    not a WorkerPool's streams, which serve other workflows."""
    shared, gpu = "ns.default", "ns.gpu"
    stream = ResultStream(client, "operator")
    await stream.ensure_marker()
    served: dict[str, dict[str, set[str] | None]] = {shared: {"u": {"load"}}, gpu: {"u": {"train"}}}
    assert await stream.read(served, 10, 10) == []
    await client.xadd(
        keys.results_stream(gpu), TaskResult("u", "ns/wf", "load", None, 1, "succeeded").encode()
    )
    await client.xadd(
        keys.results_stream(gpu), TaskResult("u", "ns/wf", "train", None, 1, "succeeded").encode()
    )
    read = await stream.read(served, 10, 100)
    assert [(r.pool, r.result.task) for r in read] == [(gpu, "train")]
    assert stream.asides == [
        (
            gpu,
            "a result for task load of workflow u in the stream of pool ns.gpu, "
            "which does not run it",
        )
    ]
    await client.hset(keys.done_hash(shared, "u"), "k", "1")
    await stream.forget_workflows([("u", shared, True), ("u", gpu, True)])
    assert not await client.exists(keys.done_hash(shared, "u"))
    assert await client.exists(keys.tasks_stream(shared), keys.results_stream(gpu)) == 2


async def test_a_draining_worker_finishes_what_a_read_under_way_hands_it(
    client: aioredis.Redis,
) -> None:
    """Scale-down and rollouts: the worker is told to stop while its read blocks; a message
    that read then returns is this worker's alone, so it is run and its result published
    before the worker counts as drained (else another worker runs it again after the
    redelivery timeout: the fault suite's scale-down case saw 4 of 200 run twice)."""
    queue = await queue_for(client, "w1")
    worker = TaskWorker(queue, block_ms=2000)
    reading = asyncio.create_task(worker.execute(CancelToken()))
    await asyncio.sleep(0.05)
    assert not worker._not_reading.is_set()  # blocked in its read
    draining = asyncio.create_task(worker.drain())
    await asyncio.sleep(0.05)
    assert not draining.done()  # the read under way may still hand it work
    await queue.enqueue([command("late", "sh", "-c", "sleep 0.2; echo done")])
    await reading
    await draining
    await worker.close()
    [result] = await results(client)
    assert (result.task, result.outcome) == ("late", "succeeded")
    pending: Any = await client.xpending(keys.tasks_stream(POOL), queues.WORKERS_GROUP)
    assert pending["pending"] == 0


async def test_a_terminated_workflows_attempts_are_cancelled_and_its_queued_ones_skipped(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    """spec.shutdown: Terminate: the worker cancels the attempts it holds of that workflow
    within a second (a command gets SIGTERM, then SIGKILL after a grace), acknowledges them
    without a result, and skips the workflow's messages it reads later; others go on."""
    async with asyncio.timeout(60):  # a hang fails here, with its traceback
        await _terminated_run(client, tmp_path)


async def _terminated_run(client: aioredis.Redis, tmp_path: Path) -> None:
    log = tmp_path / "log"
    queue = await queue_for(client, "w1")
    stubborn = f"trap 'echo term >> {log}; exit 143' TERM; echo started >> {log}; sleep 30 & wait"
    await queue.enqueue(
        [command("long", "sh", "-c", stubborn), command("other", "sleep", "0.5", uid="uid-2")]
    )
    worker = TaskWorker(queue, block_ms=100, cancel_check_seconds=0.1)
    await worker.execute(CancelToken())
    for _ in range(100):
        if log.exists():
            break
        await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    await ResultStream(client, "operator").cancel([POOL], "uid-1", ["long", "later"], at=1.0)
    await asyncio.wait_for(worker.settle(), 10)
    assert asyncio.get_running_loop().time() - started < 3
    assert log.read_text().split() == ["started", "term"]
    assert [(r.task, r.outcome) for r in await results(client)] == [("other", "succeeded")]
    # A DAG task's attempt read later is skipped; an exit task's runs (they run after).
    await queue.enqueue([counting("later", log), counting("on-exit", log)])
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    assert log.read_text().split() == ["started", "term", "on-exit"]
    assert (worker.cancelled, worker.skipped) == (1, 1)
    pending: Any = await client.xpending(keys.tasks_stream(POOL), queues.WORKERS_GROUP)
    assert pending["pending"] == 0


async def test_each_attempts_log_is_stored_beside_its_result_and_goes_with_its_workflow(
    client: aioredis.Redis,
) -> None:
    queue = await queue_for(client, "w1")
    script = "echo working >&2; sleep 0.2; echo '{\"n\": 1}'"
    await queue.enqueue([command("chat", "sh", "-c", script), command("quiet", "true")])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    by_task = {r.task: r for r in await results(client)}
    ref = by_task["chat"].log_ref
    assert ref == "treadle:pool:test-pool:wf:uid-1:log:chat:-:1"
    assert by_task["chat"].log is None  # the text is stored, never published
    assert by_task["quiet"].log_ref is None  # it wrote nothing
    stream = ResultStream(client, "operator")
    assert await stream.read_log(ref) == 'working\n{"n": 1}\n'
    assert 0 < await client.ttl(ref) <= queues.LOG_TTL_SECONDS
    # A finished workflow keeps its logs; a deleted one takes them along.
    await stream.forget_workflows([("uid-1", POOL, True)])
    assert await stream.read_log(ref) is not None
    await stream.forget_workflows([("uid-1", POOL, True)], logs=True)
    assert await stream.read_log(ref) is None
    assert await client.keys("treadle:pool:test-pool:wf:uid-1:*") == [
        keys.cancel_hash(POOL, "uid-1")
    ]


async def test_a_workflows_logs_past_their_budget_are_replaced_by_a_note(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasklogs, "WORKFLOW_LOG_BUDGET_BYTES", 3000)
    queue = await queue_for(client, "w1")
    print_kib = "head -c 1024 /dev/zero | tr '\\0' x >&2"
    await queue.enqueue([command("t", "sh", "-c", print_kib, item=i) for i in range(5)])
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    stream = ResultStream(client, "operator")
    texts = [await stream.read_log(r.log_ref or "") for r in await results(client)]
    kept = [t for t in texts if t == "x" * 1024]
    noted = [t for t in texts if t is not None and "was not kept" in t]
    assert (len(kept), len(noted)) == (2, 3)
    assert int(await client.get(keys.log_budget(POOL, "uid-1"))) == 2048


async def test_a_running_attempts_log_is_copied_as_it_writes_and_the_copy_goes_when_it_ends(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    queue = await queue_for(client, "w1")
    gate = tmp_path / "go"
    script = f"echo first line >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo done >&2"
    await queue.enqueue([command("talk", "sh", "-c", script)])
    worker = TaskWorker(queue, block_ms=100, live_log_seconds=0.1)
    await worker.execute(CancelToken())
    final = keys.log_key(POOL, "uid-1", "talk", None, 1)
    live = keys.live_log_key(final)

    async def copied() -> bool:
        return await client.get(live) is not None

    await loops.until(copied)
    assert await client.get(live) == "first line\n"
    assert await client.get(final) is None
    gate.touch()
    await worker.settle()
    await worker.close()
    assert await client.get(final) == "first line\ndone\n"
    assert await client.get(live) is None


async def test_a_long_attempt_is_announced_once_with_its_worker_and_a_short_one_never(
    client: aioredis.Redis,
) -> None:
    """#32: how a task becomes Running without an API write per task."""
    queue = await queue_for(client, "w1")
    await queue.enqueue([command("long", "sleep", "1.5"), command("short", "true")])
    worker = TaskWorker(queue, block_ms=100, start_notice_seconds=0.3, name="pool-worker-7")
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    reports = [decode_report(fields) for _, fields in await client.xrange(RESULTS)]
    starts = [r for r in reports if isinstance(r, TaskStart)]
    assert [(s.task, s.worker, s.attempt) for s in starts] == [("long", "pool-worker-7", 1)]
    ended = {r.task: r for r in reports if isinstance(r, TaskResult)}
    assert {task: r.worker for task, r in ended.items()} == {
        "long": "pool-worker-7",
        "short": "pool-worker-7",
    }
    assert abs(ended["long"].started_at - starts[0].started_at) < 0.5
