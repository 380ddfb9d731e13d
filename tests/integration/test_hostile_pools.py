"""A pool's Redis user is in its tenant's hands (any task's code has it): whatever that user
does to its own pool's keys, the operator goes on reading every other pool's results."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from treadle.core.messages import TaskMessage, TaskResult
from treadle.runtime import CancelToken
from treadle.services import keys, queues
from treadle.services.results import ResultStream
from treadle.worker.serving import TaskWorker

HOSTILE, PEACEFUL = "hostile", "peaceful"
SERVED: dict[str, dict[str, set[str] | None]] = {HOSTILE: {"h": None}, PEACEFUL: {"p": None}}


def good(uid: str = "p", attempt: int = 1) -> TaskResult:
    return TaskResult(uid, "ns/wf", "t", None, attempt, "succeeded", {"n": attempt})


async def started(client: aioredis.Redis) -> ResultStream:
    stream = ResultStream(client, "operator")
    await stream.ensure_marker()
    assert await stream.read(SERVED, 10, 1) == []
    return stream


async def deleted(client: aioredis.Redis) -> None:
    await client.delete(keys.results_stream(HOSTILE))


async def deleted_and_remade_by_a_worker(client: aioredis.Redis) -> None:
    await client.delete(keys.results_stream(HOSTILE))
    await client.xadd(keys.results_stream(HOSTILE), good("h").encode())  # type: ignore[arg-type]


async def replaced_by_a_string(client: aioredis.Redis) -> None:
    await client.set(keys.results_stream(HOSTILE), "x")


async def replaced_by_a_hash(client: aioredis.Redis) -> None:
    await client.delete(keys.results_stream(HOSTILE))
    await client.hset(keys.results_stream(HOSTILE), "a", "b")


async def its_group_destroyed(client: aioredis.Redis) -> None:
    await client.xgroup_destroy(keys.results_stream(HOSTILE), queues.OPERATOR_GROUP)


@pytest.mark.parametrize(
    "attack",
    [
        deleted,
        deleted_and_remade_by_a_worker,
        replaced_by_a_string,
        replaced_by_a_hash,
        its_group_destroyed,
    ],
)
async def test_a_broken_results_stream_of_one_pool_stalls_no_other_and_is_repaired(
    client: aioredis.Redis, attack: object
) -> None:
    """Issue #31, problem 2: a DEL (NOGROUP) or SET (WRONGTYPE) of one pool's results stream
    failed every pass of the one read for all pools, until the operator restarted."""
    stream = await started(client)
    await attack(client)  # type: ignore[operator]
    await client.xadd(keys.results_stream(PEACEFUL), good().encode())  # type: ignore[arg-type]
    read = await stream.read(SERVED, 10, 100)
    assert [received.result for received in read] == [good()]
    assert [what for _, what in stream.repairs] in (["NOGROUP"], ["WRONGTYPE"])
    # repaired: the hostile pool's own results flow again, and the next read needs no repair
    stream.repairs.clear()
    await client.xadd(keys.results_stream(HOSTILE), good("h", 2).encode())  # type: ignore[arg-type]
    await client.xadd(keys.results_stream(PEACEFUL), good("p", 3).encode())  # type: ignore[arg-type]
    again = await stream.read(SERVED, 10, 100)
    applied = [r.result for r in again]
    assert good("h", 2) in applied
    assert good("p", 3) in applied
    assert stream.repairs == []


@pytest.mark.parametrize(
    "entry",
    [
        {"result": "[" * 100_000},
        {"result": '{"a": ' * 5000 + "1" + "}" * 5000},
        {"result": json.dumps({"workflow_uid": ["x"] * 10})},
        {"result": b"\xed\xa0\x80"},
        {"result": "NaN"},
        {},
    ],
    ids=["deep-brackets", "deep-object", "wrong-types", "no-utf-8", "nan", "empty"],
)
async def test_an_entry_no_decoder_can_read_is_set_aside_and_counted(
    client: aioredis.Redis, entry: dict[str, str]
) -> None:
    """`'[' * 100000` raised RecursionError, which was never set aside: no pool's results were
    applied again until the operator restarted."""
    stream = await started(client)
    await client.xadd(keys.results_stream(HOSTILE), entry or {"x": "y"})  # type: ignore[arg-type]
    await client.xadd(keys.results_stream(PEACEFUL), good().encode())  # type: ignore[arg-type]
    read = await stream.read(SERVED, 10, 100)
    assert [received.result for received in read] == [good()]
    assert stream.set_aside == 1
    assert await stream.read(SERVED, 10, 1) == []


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ({"a": "\ud800"}, "holds a lone surrogate"),
        (json.loads("[" * 300 + "]" * 300), "nests deeper than 64 levels"),
        ({"n": float("nan")}, "which is not JSON"),
    ],
    ids=["surrogate", "300-deep", "nan"],
)
async def test_a_result_whose_output_status_cannot_hold_fails_its_attempt_saying_why(
    client: aioredis.Redis, output: object, problem: str
) -> None:
    """An exit-0 task printing `{"a": "\\ud800"}` or JSON 300 deep wedged its workflow for
    ever: every status write failed to serialise."""
    stream = await started(client)
    forged = TaskResult("h", "ns/wf", "t", None, 1, "succeeded", output)
    await client.xadd(keys.results_stream(HOSTILE), forged.encode())  # type: ignore[arg-type]
    [received] = await stream.read(SERVED, 10, 100)
    assert received.result.outcome == "failed"
    assert received.result.output is None
    assert problem in str(received.result.error)
    json.dumps(received.result.__dict__, allow_nan=False).encode()  # what status will carry


async def test_a_stored_output_overwritten_with_junk_is_left_out_not_raised(
    client: aioredis.Redis,
) -> None:
    stream = await started(client)
    await client.set("treadle:pool:hostile:out:a", "[" * 100_000)
    await client.set("treadle:pool:hostile:out:b", '{"ok": 1}')
    found = await stream.load_outputs(
        {"a": "treadle:pool:hostile:out:a", "b": "treadle:pool:hostile:out:b"}, limit_bytes=10**6
    )
    assert found == {"b": {"ok": 1}}


async def test_a_stored_output_grown_after_its_size_was_asked_is_left_out_not_read_whole(
    client: aioredis.Redis,
) -> None:
    """The operator asks the sizes, then reads: a worker's user growing an output in between
    (to 100 MB, say) would otherwise be read into the operator whole."""
    stream = await started(client)
    key = "treadle:pool:hostile:out:c"
    await client.set(key, '{"ok": 1}')
    sizes = await stream.output_sizes({"c": key})
    await client.set(key, "[" * 1_000_000)
    assert await stream.read_outputs({"c": key}, sizes) == {}
    await client.set(key, '{"ok": 2}')
    assert await stream.read_outputs({"c": key}, sizes) == {"c": {"ok": 2}}


async def test_a_task_stream_replaced_by_a_string_is_repaired_when_attempts_are_enqueued(
    client: aioredis.Redis,
) -> None:
    stream = await started(client)
    await client.set(keys.tasks_stream(HOSTILE), "x")
    message = TaskMessage("h", "ns/wf", "t", None, 1, {"command": {"args": ["true"]}}, 10)
    await stream.enqueue(HOSTILE, [message])
    assert await client.xlen(keys.tasks_stream(HOSTILE)) == 1
    assert [what for _, what in stream.repairs] == ["WRONGTYPE"]


@pytest.mark.parametrize(
    ("printed", "output"),
    [
        ('{"a": "\\ud800"}', '{"a": "\\ud800"}'),
        ("[" * 300 + "]" * 300, "[" * 300 + "]" * 300),
        ('{"n": NaN}', '{"n": NaN}'),
        ("[" * 5000 + "]" * 5000, "[" * 5000 + "]" * 5000),
    ],
    ids=["surrogate", "300-deep", "nan", "5000-deep"],
)
async def test_a_command_printing_json_status_cannot_hold_succeeds_with_its_text(
    client: aioredis.Redis, tmp_path: Path, printed: str, output: str
) -> None:
    """At the worker: output that would not fit status is kept as the text it printed (5,000
    deep raised RecursionError in the worker, and the reaper ran the attempt 4 times)."""
    script = tmp_path / "print.sh"
    script.write_text(f"cat <<'EOF'\n{printed}\nEOF\n")
    queue = queues.TaskQueue(client, HOSTILE, "w1")
    await queue.ensure_groups()
    await queue.enqueue(
        [TaskMessage("h", "ns/wf", "t", None, 1, {"command": {"args": ["sh", str(script)]}}, 10)]
    )
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    [(_, fields)] = await client.xrange(keys.results_stream(HOSTILE))
    result = TaskResult.decode(fields)
    assert result.outcome == "succeeded"
    stored = await client.get(str(result.output_ref))
    assert json.loads(stored) == output


async def run_one(client: aioredis.Redis, *args: str) -> TaskResult:
    queue = queues.TaskQueue(client, HOSTILE, "w1")
    await queue.ensure_groups()
    await queue.enqueue(
        [TaskMessage("h", "ns/wf", "t", None, 1, {"command": {"args": list(args)}}, 30)]
    )
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    # The result (an attempt running a second or more is also announced before it).
    [fields] = [f for _, f in await client.xrange(keys.results_stream(HOSTILE)) if "result" in f]
    return TaskResult.decode(fields)


async def test_an_attempt_ends_when_its_command_exits_and_takes_its_leftover_children(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    """`sh -c 'sleep 40 & echo ok'` timed out: the worker waited for the pipes to close, and
    the detached child outlived its attempt."""
    marker = tmp_path / "child-alive"
    script = f"(sleep 3; touch {marker}) & echo '\"ok\"'"
    started_at = asyncio.get_running_loop().time()
    result = await run_one(client, "sh", "-c", script)
    took = asyncio.get_running_loop().time() - started_at
    assert (result.outcome, result.output) == ("succeeded", "ok")
    assert took < 2.5
    await asyncio.sleep(3.5)  # past the child's own time: it was killed with its group
    assert not marker.exists()


async def test_a_task_command_gets_no_redis_credentials_in_its_environment(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TREADLE_REDIS_URL", "redis://pool-user:secret@redis:6379/0")
    result = await run_one(client, "sh", "-c", 'echo "\\"${TREADLE_REDIS_URL:-none}\\""')
    assert result.output == "none"


async def test_a_deleted_workflows_queued_attempts_are_dropped_and_no_key_outlives_it(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    """Issue #31, problem 4: 116-144 of 200 deleted workflows' queued attempts still ran,
    leaving ~900 keys without expiry."""
    marker = tmp_path / "ran"
    queue = queues.TaskQueue(client, HOSTILE, "w1")
    await queue.ensure_groups()
    touch = {"command": {"args": ["touch", str(marker)]}}
    await queue.enqueue([TaskMessage("gone", "ns/wf", "t", None, 1, touch, 10)])
    await ResultStream(client, "operator").forget_workflows([("gone", HOSTILE, True)], logs=True)
    worker = TaskWorker(queue, block_ms=100)
    await worker.execute(CancelToken())
    await worker.settle()
    await worker.close()
    assert not marker.exists()
    assert await client.xlen(keys.results_stream(HOSTILE)) == 0
    # An attempt that ends after its workflow went leaves only keys that expire.
    await run_one(client, "echo", '{"n": 1}')
    for key in await client.keys("treadle:pool:hostile:*"):
        if await client.type(key) != "stream":
            assert await client.ttl(key) > 0, key
