"""Running a task's action in the worker: the runners of the action kinds (each kind names its
runner in treadle.core.actions).  The only module that calls out on behalf of tasks.

A runner is `async (spec, attempt) -> output`: it returns the task's output or raises
`ActionFailed` with a message fit for status (never a secret: header values are not echoed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import json
import os
import re
import signal
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treadle.core import actions, causes, jsonvalues, messages
from treadle.core.tasklogs import LogTail
from treadle.worker import capture, interrupts

if TYPE_CHECKING:
    import aiohttp

OUTPUT_LIMIT_BYTES = 1 << 20
CANCEL_GRACE_SECONDS = 5.0
EXIT_DRAIN_SECONDS = 1.0
"""How long an exited command's leftover children may keep its output pipes open."""
HIDDEN_ENV = ("TREADLE_REDIS_URL", "TREADLE_WORKER_REDIS_URL")
"""The worker's own credentials, never in a task command's environment."""
"""How long a cancelled command has between SIGTERM and SIGKILL."""


class ActionFailed(Exception):
    """The attempt failed; the message says why, and `cause` what kind of failure it was (the
    engine's `retry.retryOn` rules judge by it)."""

    def __init__(self, message: str, cause: causes.Cause | None = None) -> None:
        super().__init__(message)
        self.cause = cause


def _exception_names(error: BaseException) -> tuple[str, ...]:
    """The exception's class and its bases (not `object`), its own first."""
    ancestry = [kind.__name__ for kind in type(error).__mro__ if kind is not object]
    return tuple(ancestry[: causes.MAX_EXCEPTION_NAMES])


TIMED_OUT = causes.Cause("timeout")


@dataclass(frozen=True)
class Attempt:
    """What a runner may need of the attempt besides its action's spec."""

    timeout_seconds: float
    idempotency_key: str
    session: Callable[[], aiohttp.ClientSession]
    """The worker's HTTP session, made on first use."""
    log: LogTail = field(default_factory=LogTail)
    """What the attempt wrote (its last 256 KiB)."""


Runner = Callable[[Mapping[str, Any], Attempt], Awaitable[Any]]


@functools.cache
def runner(kind: str) -> Runner:
    """The runner of an action kind, from the registry; ActionFailed for a kind it has not."""
    found = actions.KINDS.get(kind)
    if found is None:
        raise ActionFailed(f"unknown action {kind!r}")
    module_name, _, function_name = found.runner.partition(":")
    run: Runner = getattr(importlib.import_module(module_name), function_name)
    return run


def _parse(text: str) -> Any:
    """stdout or a body as JSON when it parses into a value status can hold (core/jsonvalues:
    not too deep, no NaN, no lone surrogate), else the text without its final newline."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return jsonvalues.loads(stripped)
    except ValueError:
        return jsonvalues.text(text.rstrip("\n"))


class OutputTooLarge(ActionFailed):
    """An attempt's output crossed OUTPUT_LIMIT_BYTES while it was read (SPEC, Limits)."""

    def __init__(self) -> None:
        super().__init__(f"output too large: more than {OUTPUT_LIMIT_BYTES} bytes")


STDERR_KEPT_BYTES = 64 * 1024


async def _read_capped(
    stream: asyncio.StreamReader | None, limit: int, log: LogTail, *, tail: bool
) -> bytes:
    """A stream read to its end, holding at most `limit` bytes: more raises OutputTooLarge, or
    with `tail` keeps only the last `limit` bytes (stderr, for the error message).  Every chunk
    goes to the attempt's log too, as it comes (stdout and stderr interleaved)."""
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(64 * 1024):
        log.write(chunk)
        kept += chunk
        if len(kept) > limit:
            if not tail:
                raise OutputTooLarge()
            del kept[: len(kept) - limit]
    return bytes(kept)


async def _bounded_output(
    process: asyncio.subprocess.Process, ended: asyncio.Event, log: LogTail
) -> tuple[bytes, bytes]:
    """stdout (at most OUTPUT_LIMIT_BYTES) and the tail of stderr, until the process exits.
    The attempt ends with its process, not with its pipes: a child it left behind holding them
    (`sleep 40 &`) gets EXIT_DRAIN_SECONDS to finish writing, then the process group goes."""
    reading = asyncio.gather(
        _read_capped(process.stdout, OUTPUT_LIMIT_BYTES, log, tail=False),
        _read_capped(process.stderr, STDERR_KEPT_BYTES, log, tail=True),
    )
    exited = asyncio.ensure_future(ended.wait())
    try:
        either: set[asyncio.Future[Any]] = {reading, exited}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if exited.done() and not reading.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), EXIT_DRAIN_SECONDS)
            _kill_group(process)
        stdout, stderr = await reading  # OutputTooLarge raises here
        await process.wait()
    finally:
        reading.cancel()
        exited.cancel()
        with contextlib.suppress(BaseException):
            await reading
        if process.returncode is not None:  # cancelled while it runs: run_command stops it
            _kill_group(process)
    return stdout, stderr


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's stream protocol, telling when the process exits: Process.wait() (Python
    3.11) returns only once its pipes are closed too, which a leftover child may hold open."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def _spawn(args: list[str]) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
    """A task command in a session of its own (its group is killed with it), with no input,
    piped output and the worker's environment less its credentials; and the Event set when
    it exits."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitProtocol(loop),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env=_task_env(),
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Ends whatever is left of an attempt's process group (it was made a session leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_command(spec: Mapping[str, Any], attempt: Attempt) -> Any:
    timeout_seconds = attempt.timeout_seconds
    args = [str(a) for a in spec["args"]]
    try:
        process, exited = await _spawn(args)
    except OSError as error:
        raise ActionFailed(f"cannot run {args[0]!r}: {error.strerror}") from error
    try:
        stdout, stderr = await asyncio.wait_for(
            _bounded_output(process, exited, attempt.log), timeout_seconds
        )
    except (TimeoutError, asyncio.CancelledError, OutputTooLarge) as stop:
        if isinstance(stop, asyncio.CancelledError):
            # Terminated (or the worker is stopping): SIGTERM first, SIGKILL after a grace.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), CANCEL_GRACE_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        # Drain and close the pipes (the process is gone, so this ends at once).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.communicate(), 5)
        await process.wait()
        if isinstance(stop, asyncio.CancelledError):
            raise
        if isinstance(stop, OutputTooLarge):
            raise
        raise ActionFailed(f"timed out after {timeout_seconds:g} s", TIMED_OUT) from stop
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip()[-500:]
        raise ActionFailed(
            f"exit code {process.returncode}" + (f": {tail}" if tail else ""),
            causes.Cause("exit", exit_code=process.returncode),
        )
    return _parse(stdout.decode(errors="replace"))


def _task_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in HIDDEN_ENV}


def _resolve(path: str) -> Callable[..., Any]:
    module_name, _, function_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)
    except (ImportError, AttributeError) as error:
        raise ActionFailed(f"cannot import {path}: {error}") from error
    if not callable(function):
        raise ActionFailed(f"{path} is not callable")
    return function  # type: ignore[no-any-return]


async def run_job(spec: Mapping[str, Any], attempt: Attempt) -> Any:
    """A `job` action runs as a Job the operator makes, never on a worker: a message that
    carries one (forged, or from a version that routed it here) fails, saying so."""
    raise ActionFailed("a job action runs in a Job of its own, not on a worker")


async def run_python(spec: Mapping[str, Any], attempt: Attempt) -> Any:
    timeout_seconds = attempt.timeout_seconds
    function = _resolve(spec["callable"])
    kwargs = dict(spec.get("kwargs") or {})
    try:
        with capture.into(attempt.log):
            if inspect.iscoroutinefunction(function):
                result = await asyncio.wait_for(function(**kwargs), timeout_seconds)
            else:  # interrupted past its timeout (worker/interrupts.py)
                result = await interrupts.call_in_thread(function, kwargs, timeout_seconds)
    except TimeoutError as error:
        raise ActionFailed(f"timed out after {timeout_seconds:g} s", TIMED_OUT) from error
    except ActionFailed:
        raise
    except Exception as error:
        attempt.log.write("".join(traceback.format_exception(error)))
        cause = causes.Cause("exception", exceptions=_exception_names(error))
        raise ActionFailed(f"{type(error).__name__}: {error}", cause) from error
    unfit = jsonvalues.fit(result)
    if unfit is not None:
        raise ActionFailed(f"the return value cannot be an output: it {unfit}")
    try:
        encoded = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise ActionFailed(f"the return value is not JSON-serialisable: {error}") from error
    if len(encoded) > OUTPUT_LIMIT_BYTES:
        raise OutputTooLarge()
    return result


def _header_value(header: Mapping[str, Any]) -> str:
    if "value" in header:
        return str(header["value"])
    ref = header["valueFrom"]["secretKeyRef"]
    value = os.environ.get(messages.secret_env_name(ref["name"], ref["key"]))
    if value is None:
        value = _mounted_secret(ref["name"], ref["key"])
    if value is None:
        raise ActionFailed(
            f"header {header['name']}: key {ref['key']!r} of Secret {ref['name']!r} is neither "
            "in this worker's environment nor mounted in it"
        )
    return value


_MOUNTED_NAME = re.compile(r"[-_a-zA-Z0-9][-._a-zA-Z0-9]*")


SECRET_VALUES_SECONDS = 30.0
"""How long the Secret values read for log masking are reused (a mounted Secret may rotate)."""
_secret_values: tuple[float, list[str]] = (float("-inf"), [])


def secret_values() -> list[str]:
    """The values of the Secrets this worker holds (its `TREADLE_SECRET_*` variables and the
    files of the Secrets its pool mounts), which no log may show.  Read again at most every
    SECRET_VALUES_SECONDS, not per attempt: attempts that write are the hot path."""
    global _secret_values
    read_at, values = _secret_values
    if time.monotonic() - read_at < SECRET_VALUES_SECONDS:
        return values
    values = [v for k, v in os.environ.items() if k.startswith(messages.SECRET_ENV_PREFIX)]
    root = os.environ.get("TREADLE_SECRETS_DIR")
    if root:
        with contextlib.suppress(OSError):
            for path in Path(root).glob("*/*"):
                if not path.name.startswith(".") and path.is_file():
                    with contextlib.suppress(OSError, UnicodeError):
                        values.append(path.read_text().rstrip("\n"))
    _secret_values = (time.monotonic(), values)
    return values


def _mounted_secret(name: str, key: str) -> str | None:
    """A key of a Secret a WorkerPool mounts (`$TREADLE_SECRETS_DIR/<secret>/<key>`)."""
    root = os.environ.get("TREADLE_SECRETS_DIR")
    if not root or not all(_MOUNTED_NAME.fullmatch(part) for part in (name, key)):
        return None  # nothing but a file right under the Secret's own directory
    try:
        return (Path(root) / name / key).read_text().rstrip("\n")
    except OSError:
        return None


async def run_http(spec: Mapping[str, Any], attempt: Attempt) -> Any:
    timeout_seconds = attempt.timeout_seconds
    headers = {h["name"]: _header_value(h) for h in spec.get("headers") or []}
    headers["Idempotency-Key"] = attempt.idempotency_key
    body = spec.get("body")
    data: str | None = None
    if body is not None:
        if isinstance(body, str):
            data = body
        else:
            data = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
    expected = set(spec.get("expectedStatus") or [])
    method, url = spec.get("method", "GET"), spec["url"]
    import aiohttp  # not at the top: workers that run no http task never pay for it

    attempt.log.write(f"{method} {url}\n")
    sent = time.monotonic()
    try:
        async with attempt.session().request(
            method,
            url,
            headers=headers,
            data=data,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            body = await response.content.read(OUTPUT_LIMIT_BYTES + 1)
            if len(body) > OUTPUT_LIMIT_BYTES:
                raise OutputTooLarge()
            text = body.decode(response.charset or "utf-8", errors="replace")
            took = time.monotonic() - sent
            attempt.log.write(
                f"{response.status} {response.reason or ''} in {took:.3f} s, {len(body)} bytes\n"
            )
            ok = response.status in expected if expected else 200 <= response.status < 300
            if not ok:
                cause = causes.Cause(
                    "httpStatus",
                    status=response.status,
                    retry_after=causes.parse_retry_after(response.headers.get("Retry-After")),
                )
                raise ActionFailed(
                    f"{response.status} from {response.url.host}: {text[:200]}", cause
                )
            return _parse(text)
    except TimeoutError as error:
        raise ActionFailed(
            f"timed out after {timeout_seconds:g} s calling {url}", TIMED_OUT
        ) from error
    except aiohttp.ClientError as error:
        raise ActionFailed(f"{method} {url}: {error}", causes.Cause("connection")) from error
