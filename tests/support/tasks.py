"""Python callables for `python` task tests (importable as support.tasks:...)."""

from __future__ import annotations


def add(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b}


async def greet(name: str) -> str:
    return f"hello {name}"


def explode() -> None:
    raise RuntimeError("kaboom")


def merge(users: list[dict[str, object]]) -> dict[str, object]:
    """The seed's fan-in: merge every fetched user into one result."""
    return {"count": len(users), "names": [u["name"] for u in users]}


def record(log: str, key: str, seconds: float = 0.0) -> str:
    """The fault suite's idempotent task.  It notes each start in `<log>.started`, works for
    `seconds`, notes its end in `<log>.finished`, and makes its effect once per key: the
    exclusive creation of `<log>.keys/<key>` (atomic across processes) decides which execution
    makes it, and that one notes it in `<log>.effects`."""
    import os
    import time
    from pathlib import Path

    key = str(key)  # a template of only `{{ item }}` renders the item itself: a number here
    with open(f"{log}.started", "a") as started:
        started.write(f"{key}\n")
    time.sleep(seconds)
    keys = Path(f"{log}.keys")
    keys.mkdir(exist_ok=True)
    try:
        os.close(os.open(keys / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        pass
    else:
        with open(f"{log}.effects", "a") as effects:
            effects.write(f"{key}\n")
    with open(f"{log}.finished", "a") as finished:
        finished.write(f"{key}\n")
    return key


def die() -> None:
    """A poison task: it kills the worker process that runs it, every time."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def big_output() -> str:
    """More than one task's output may be (1 MiB)."""
    return "x" * (2 << 20)


def padded(index: int, size: int = 4000) -> str:
    """An output of `size` characters (the status budget tests' child)."""
    return str(index).rjust(size, "x")


async def trespass(own_uid: str, victim_uid: str, victim_run: int) -> dict[str, str]:
    """A hostile tenant's task: with the Redis URL of its own worker, it tries to reach another
    workflow's queue and Redis itself, and forges results (issue #13, problem 4).  Returns
    what each try got."""
    import json

    import redis.asyncio as aioredis

    from treadle.core.messages import TaskResult
    from treadle.services import keys

    own, victim = f"wf-{own_uid}", f"wf-{victim_uid}"
    forged = TaskResult(victim_uid, "x/victim", "slow", None, 1, "succeeded", "forged")
    forged = TaskResult(**{**forged.__dict__, "run": victim_run})
    tries: dict[str, tuple[object, ...]] = {
        "read their tasks": ("XRANGE", keys.tasks_stream(victim), "-", "+"),
        "forge in their stream": ("XADD", keys.results_stream(victim), "*", *_flat(forged)),
        "read their output": ("GET", keys.output_key(victim, victim_uid, "slow", None, victim_run)),
        "flush": ("FLUSHALL",),
        "list keys": ("KEYS", "*"),
        "stall redis": ("EVAL", "while true do end", "0"),
        "read the config": ("CONFIG", "GET", "requirepass"),
        "junk in my stream": ("XADD", keys.results_stream(own), "*", "junk", "x"),
        "forge in my stream": ("XADD", keys.results_stream(own), "*", *_flat(forged)),
    }
    client = aioredis.Redis.from_url(_worker_redis_url(), decode_responses=True)
    got: dict[str, str] = {}
    try:
        for name, command in tries.items():
            try:
                got[name] = "done: " + json.dumps(await client.execute_command(*command))[:60]
            except aioredis.ResponseError as error:
                got[name] = type(error).__name__
    finally:
        await client.aclose()
    return got


def _flat(result: object) -> list[str]:
    from treadle.core.messages import TaskResult

    assert isinstance(result, TaskResult)
    return [part for pair in result.encode().items() for part in pair]


async def slow_value(seconds: float, value: str) -> str:
    import asyncio

    await asyncio.sleep(seconds)
    return value


def _worker_redis_url() -> str:
    """The worker's Redis URL, as task code that looks hard enough finds it: the worker drops
    it from its environment, but the process's first environment still holds it."""
    import os
    from pathlib import Path

    if os.environ.get("TREADLE_REDIS_URL"):
        return os.environ["TREADLE_REDIS_URL"]
    for variable in Path("/proc/self/environ").read_bytes().split(b"\0"):
        name, _, value = variable.decode(errors="replace").partition("=")
        if name == "TREADLE_REDIS_URL":
            return value
    raise RuntimeError("no TREADLE_REDIS_URL anywhere")


async def pollute(
    own_uid: str, victim_uid: str, victim_run: int, items: int, wreck: bool = False
) -> dict[str, int]:
    """A hostile tenant's fault-suite task: for every child of the victim's `work` fan-out, a
    junk entry and a forged success in its own result stream, and a try at the victim's.  With
    `wreck`, it also replaces its own result stream by a string, writes entries no decoder can
    read, and deletes the stream (issue #31, problem 2), pausing after each so that the
    operator meets each state."""
    import asyncio
    import json

    import redis.asyncio as aioredis

    from treadle.core.messages import TaskResult
    from treadle.services import keys

    own, victim = keys.results_stream(f"wf-{own_uid}"), keys.results_stream(f"wf-{victim_uid}")
    client = aioredis.Redis.from_url(_worker_redis_url(), decode_responses=True)
    written = denied = 0
    try:
        if wreck:
            await client.delete(own)
            await client.set(own, "not a stream")
            await asyncio.sleep(3)
            await client.delete(own)
            deep = TaskResult(own_uid, "x/hostile", "pollute", 0, 1, "succeeded").__dict__
            for entry in (
                {"result": "[" * 100_000},
                {"result": json.dumps(deep | {"output": {"a": "\ud800"}})},
                {"result": json.dumps(deep | {"output": json.loads("[" * 300 + "]" * 300)})},
                {"result": b"\xed\xa0\x80"},
            ):
                await client.xadd(own, entry)  # type: ignore[arg-type]
                written += 1
        for item in range(items):
            forged = TaskResult(
                victim_uid, "x/victim", "work", item, 1, "succeeded", "forged", run=victim_run
            ).encode()
            await client.xadd(own, {"junk": str(item)})
            await client.xadd(own, forged)  # type: ignore[arg-type]
            written += 2
            try:
                await client.xadd(victim, forged)  # type: ignore[arg-type]
            except aioredis.ResponseError:
                denied += 1
        if wreck:
            await client.delete(own)
            await asyncio.sleep(3)
    finally:
        await client.aclose()
    if denied != items:
        raise RuntimeError(f"{items - denied} writes to the victim's result stream went through")
    return {"written": written, "denied": denied}


def chatty(lines: int = 2) -> str:
    """Prints and logs, then returns: its attempt's log holds both, its output neither."""
    import logging

    for number in range(lines):
        print(f"printed line {number}")
    logging.getLogger("support.chatty").warning("a warning from the task")
    return "done"


async def chatty_async(name: str) -> str:
    import asyncio

    print(f"hello from {name}")
    await asyncio.sleep(0.01)
    print(f"bye from {name}")
    return name


def fails_first(marker: str) -> str:
    """Fails (with a traceback) on its first attempt, prints and succeeds on the next: the
    first call creates `marker`."""
    import os

    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        print("second try: all good")
        return "ok"
    os.close(fd)
    print("first try: about to fail")
    raise RuntimeError("flaky on purpose")
