"""`kubectl treadle lock ...` and `kubectl treadle sync ...`: locks by hand, runs on demand.

Holding a lock by hand is how an operator keeps sync jobs off a pipeline or a table (during a
migration, say): the lock is the same Lease a run would take, held by `kubectl:<user>@<host>`
for the given time, and released by hand or when that time is over.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from lightkube import AsyncClient, Client
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event

from treadle.api import BACKFILL_ANNOTATION, RUN_NOW_ANNOTATION
from treadle.core import backfills, gates, timestamps
from treadle.plugin import flags, objects, terminal
from treadle.plugin.output import Failure, table
from treadle.services import kube
from treadle.services.leases import Held, LeaseStore, current_holder

DURATION = re.compile(r"^(\d+)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> int:
    """`90`, `30s`, `10m`, `2h`, `1d` as seconds."""
    found = DURATION.match(text.strip())
    if not found or int(found[1]) == 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 10m, 2h)")
    return int(found[1]) * UNITS[found[2]]


def add_commands(commands: Any) -> None:
    lock = commands.add_parser("lock", help="hold, release or list pipeline and table locks")
    lock_commands = lock.add_subparsers(dest="lock_command", required=True, metavar="COMMAND")
    for verb, helped in (("hold", "hold a lock by hand"), ("release", "release a lock")):
        leaf = flags.command_parser(lock_commands, verb, help=helped)
        leaf.add_argument("kind", choices=("pipeline", "table"))
        leaf.add_argument("name")
        leaf.add_argument("--holder", default=default_holder(), help="who holds it")
        if verb == "hold":
            leaf.add_argument("--for", dest="duration", type=seconds, default=600, help="e.g. 10m")
            leaf.set_defaults(handler=lock_hold)
        else:
            leaf.add_argument("--force", action="store_true", help="release whoever holds it")
            leaf.set_defaults(handler=lock_release)
    listing = flags.command_parser(lock_commands, "list", help="list Treadle's locks")
    listing.set_defaults(handler=lock_list)

    sync = commands.add_parser("sync", help="run a sync job now, or show its state")
    sync_commands = sync.add_subparsers(dest="sync_command", required=True, metavar="COMMAND")
    run = flags.command_parser(sync_commands, "run", help="run a sync job now (locks apply)")
    run.add_argument("job")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (0: none)")
    run.set_defaults(handler=sync_run)
    status = flags.command_parser(sync_commands, "status", help="show a sync job's state")
    status.add_argument("job")
    status.set_defaults(handler=sync_status)
    backfill = flags.command_parser(
        sync_commands,
        "backfill",
        help="run every slot of a range again, oldest first, under the job's locks",
        description="Times without a zone are read in the job's timeZone; slots that already "
        "succeeded are skipped unless --rerun.  Progress shows in `sync status`.",
    )
    backfill.add_argument("job")
    backfill.add_argument("--from", dest="start", help="first slot, e.g. 2026-11-01T00:00")
    backfill.add_argument("--to", dest="end", help="end of the range (its slots are before it)")
    backfill.add_argument("--parallel", type=int, default=1, help="runs at once (default 1)")
    backfill.add_argument("--rerun", action="store_true", help="run slots that succeeded too")
    backfill.add_argument("--cancel", action="store_true", help="cancel the running backfill")
    backfill.add_argument("--watch", action="store_true", help="follow it to its end")
    backfill.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the "
                          "operator to take it up (0: do not wait)")  # fmt: skip
    backfill.set_defaults(handler=sync_backfill)


def default_holder() -> str:
    return f"kubectl:{getpass.getuser()}@{socket.gethostname()}"


def lock_name(kind: str, name: str) -> str:
    return gates.pipeline_lock(name) if kind == "pipeline" else gates.table_lock(name)


def _async_client(client: Client) -> AsyncClient:
    return AsyncClient(client.config, namespace=client.namespace, field_manager="kubectl-treadle")


def lock_hold(client: Client, args: argparse.Namespace) -> int:
    lock = lock_name(args.kind, args.name)

    async def hold() -> Held | str:
        api = _async_client(client)
        try:
            return await LeaseStore(api, client.namespace).take(lock, args.holder, args.duration)
        finally:
            await api.close()

    taken = asyncio.run(hold())
    if isinstance(taken, str):
        raise Failure(f"{args.kind} {args.name} is held by {taken}")
    print(f"{args.kind} {args.name}: held by {args.holder} for {args.duration} s ({lock})")
    return 0


def lock_release(client: Client, args: argparse.Namespace) -> int:
    lock = lock_name(args.kind, args.name)

    async def release() -> tuple[bool, str | None]:
        api = _async_client(client)
        try:
            store = LeaseStore(api, client.namespace)
            holder = await store.holder(lock)
            who = holder if args.force and holder else args.holder
            return await store.release(lock, who), holder
        finally:
            await api.close()

    released, holder = asyncio.run(release())
    if not released:
        if holder is None:
            raise Failure(f"{args.kind} {args.name} is not held")
        raise Failure(f"{args.kind} {args.name} is held by {holder}, not you (--force releases it)")
    print(f"{args.kind} {args.name}: released")
    return 0


def lock_rows(leases: Iterable[Lease], now: datetime) -> list[list[Any]]:
    """Treadle's locks among `leases`: kind, name, holder, time left, transitions."""
    rows = []
    for lease in leases:
        name = lease.metadata.name if lease.metadata else None
        if not name or not name.startswith((gates.PIPELINE_PREFIX, gates.TABLE_PREFIX)):
            continue
        kind, _, lock = name.removeprefix("treadle-").partition("-")
        holder = current_holder(lease.spec, now)
        until = ""
        if holder and lease.spec and lease.spec.renewTime and lease.spec.leaseDurationSeconds:
            left = (
                lease.spec.renewTime.timestamp() + lease.spec.leaseDurationSeconds - now.timestamp()
            )
            until = f"{left:.0f}s"
        transitions = lease.spec.leaseTransitions if lease.spec else 0
        rows.append([kind, lock, holder or "(free)", until, transitions or 0])
    return rows


def job_locks(job: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The locks a job's runs take or check: (kind, name)."""
    spec, meta = job.get("spec") or {}, job.get("metadata") or {}
    pipeline = spec.get("pipeline") or meta.get("name")
    return {("pipeline", str(pipeline))} | {("table", str(t)) for t in spec.get("tables") or []}


def lock_list(client: Client, args: argparse.Namespace) -> int:
    rows = lock_rows(client.list(Lease), datetime.now(UTC))
    if not rows:
        print("No locks.")
        return 0
    print(table(["KIND", "NAME", "HOLDER", "EXPIRES IN", "TRANSITIONS"], rows))
    return 0


def _get_job(client: Client, name: str) -> Any:
    return objects.get(client, kube.SyncJob, "sync job", name)


def sync_run(client: Client, args: argparse.Namespace) -> int:
    """Asks for a run now and says what came of it: started (its name), skipped on a lock
    (exit 1), could not be made (exit 1), or waiting for the run under way."""
    _get_job(client, args.job)
    asked = datetime.now(UTC).isoformat(timespec="microseconds")
    try:
        taken = objects.ask(
            client, kube.SyncJob, "sync job", args.job, RUN_NOW_ANNOTATION, asked, args.timeout
        )
    except Failure:
        answer = _manual_run(_get_job(client, args.job), asked)
        if answer.get("outcome") != "Waiting":
            raise
        raise Failure(
            f"the run {answer.get('message')}: the request stays, and the operator starts it "
            f"then (kubectl treadle sync status {args.job})"
        ) from None
    if taken is None:
        print(f"sync job {args.job}: run requested ({asked})")
        return 0
    answer = _manual_run(taken, asked)
    outcome = answer.get("outcome")
    if outcome == "Started":
        print(f"sync job {args.job}: run {answer.get('run')} started")
        return 0
    if outcome in ("Skipped", "Failed"):
        print(f"sync job {args.job}: {terminal.safe(str(answer.get('message')))}")
        return 1
    print(f"sync job {args.job}: run taken up by the operator ({asked})")
    return 0


def _manual_run(job: Mapping[str, Any], asked: str) -> dict[str, Any]:
    """What the operator recorded of the run asked for with `asked` ({}: nothing yet)."""
    answer = (job.get("status") or {}).get("manualRun") or {}
    return dict(answer) if answer.get("requested") == asked else {}


def sync_status(client: Client, args: argparse.Namespace) -> int:
    rows = status_rows(_get_job(client, args.job))
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:  # holders and messages are anyone's text: shown inert
        print(f"{label + ':':<{width}} {'' if value is None else terminal.safe(str(value))}")
    return 0


def status_rows(job: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """What `sync status` shows of a job (and the UI too), as (label, value) rows."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    found = {c["type"]: c for c in status.get("conditions") or []}
    skip = status.get("lastSkipReason")
    rows = [
        ("Schedule", f"{spec.get('schedule')} ({spec.get('timeZone') or 'UTC'})"),
        ("Suspended", spec.get("suspend", False)),
        ("Current slot", status.get("currentSlot")),
        ("Last attempt", status.get("lastAttemptTime")),
        ("Last outcome", status.get("lastOutcome")),
        ("Skipped because", f"{skip} (held by {status.get('lastSkipHolder')})" if skip else None),
        ("Attempts in slot", status.get("attemptsInSlot")),
        ("Next retry", status.get("nextRetryTime")),
        ("Next schedule", status.get("nextScheduleTime")),
        ("Active run", status.get("activeRun")),
        ("Runs under way", ", ".join(r["name"] for r in status.get("activeRuns") or []) or None),
        ("Backfill", _backfill_line(status.get("backfill"))),
        ("Run by hand", _manual_line(status.get("manualRun"))),
        ("Consecutive failures", status.get("consecutiveFailures")),
        ("Last success", status.get("lastSuccessfulTime")),
        ("Ready", _condition(found.get("Ready"))),
        ("Degraded", _condition(found.get("Degraded"))),
    ]
    return rows


def _backfill_line(backfill: dict[str, Any] | None) -> str | None:
    if not backfill:
        return None
    return f"{backfill['id']} {backfill.get('phase')} {backfill['range']}: {_progress(backfill)}"


def _progress(backfill: dict[str, Any]) -> str:
    """How far it got, and what it waits for when it waits for a lock."""
    message = str(backfill.get("message") or "")
    line = backfills.summary(backfill)
    return f"{line}; {message}" if message.startswith(backfills.WAITING) else line


def _manual_line(manual: dict[str, Any] | None) -> str | None:
    if not manual:
        return None
    return f"{manual.get('outcome')}: {manual.get('message') or manual.get('run') or ''}"


def _condition(condition: dict[str, Any] | None) -> str | None:
    if condition is None:
        return None
    message = condition.get("message")
    return f"{condition['status']} ({condition.get('reason')}{': ' + message if message else ''})"


def moment(text: str, zone: str | None) -> datetime:
    """`2026-11-01`, `2026-11-01T00:00` (in `zone`, the job's time zone) or any RFC 3339 time."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise Failure(f"not a time: {text!r} (e.g. 2026-11-01T00:00)") from None
    if found.tzinfo is None:
        found = found.replace(tzinfo=ZoneInfo(zone or "UTC"))
    return found.astimezone(UTC)


def sync_backfill(client: Client, args: argparse.Namespace) -> int:
    job = _get_job(client, args.job)
    before = int(((job.get("status") or {}).get("backfill") or {}).get("id") or 0)
    if args.cancel:
        value = backfills.CANCEL
    else:
        if not args.start or not args.end:
            raise Failure("--from and --to are needed (or --cancel)")
        if not 1 <= args.parallel <= backfills.PARALLEL_LIMIT:
            raise Failure(f"--parallel must be from 1 to {backfills.PARALLEL_LIMIT}")
        zone = (job.get("spec") or {}).get("timeZone")
        request = {
            "from": timestamps.text(moment(args.start, zone)),
            "to": timestamps.text(moment(args.end, zone)),
            "parallel": args.parallel,
            "rerun": args.rerun,
            # Two requests of the same range are two requests: each is answered.
            "asked": datetime.now(UTC).isoformat(timespec="microseconds"),
        }
        value = json.dumps(request, sort_keys=True)
    asked = time.time()
    taken = objects.ask(
        client, kube.SyncJob, "sync job", args.job, BACKFILL_ANNOTATION, value, args.timeout
    )
    if taken is None:
        print(f"sync job {args.job}: backfill requested")
        return 0
    backfill = (taken.get("status") or {}).get("backfill") or {}
    if args.cancel:
        if backfill.get("phase") != "Cancelled" or int(backfill.get("id") or 0) != before:
            raise Failure(_refusal(client, args.job, asked) or "no backfill is running")
        print(f"sync job {args.job}: backfill {before} cancelled (runs under way finish)")
        return 0
    if int(backfill.get("id") or 0) != before + 1:
        raise Failure(_refusal(client, args.job, asked) or "the operator did not begin it")
    print(
        f"sync job {args.job}: backfill {backfill['id']} of {backfill['range']}: "
        f"{backfill['slots']} slots, {backfill.get('parallel', 1)} at a time"
    )
    if not args.watch:
        return 0
    return _follow(client, args.job, int(backfill["id"]))


def _follow(client: Client, name: str, identity: int) -> int:
    shown = None
    while True:
        backfill = (_get_job(client, name).get("status") or {}).get("backfill") or {}
        if int(backfill.get("id") or 0) != identity:
            raise Failure(f"backfill {identity} was replaced by another")
        line = f"{backfill.get('phase')}: {_progress(backfill)}"
        if line != shown:
            print(line, flush=True)
            shown = line
        if backfill.get("phase") != "Running":
            return 0 if backfill.get("phase") == "Complete" and not backfill.get("failed") else 1
        time.sleep(1.0)


def _refusal(client: Client, job: str, since: float) -> str | None:
    """The operator's reason for refusing the request just made: its newest BackfillRefused
    Event (the operator tells it before it takes the request's annotation away)."""
    found = sorted(
        (stamp.timestamp(), event.message or "")
        for event in client.list(Event, fields={"involvedObject.name": job})
        if event.reason == "BackfillRefused"
        and (stamp := event.lastTimestamp or event.eventTime or event.firstTimestamp) is not None
        and stamp.timestamp() >= since - 1
    )
    return found[-1][1] if found else None
