"""`kubectl treadle lock ...` and `kubectl treadle sync ...`: locks by hand, runs on demand.

Holding a lock by hand is how an operator keeps sync jobs off a pipeline or a table (during a
migration, say): the lock is the same Lease a run would take, held by `kubectl:<user>@<host>`
for the given time, and released by hand or when that time is over.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import socket
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient, Client
from lightkube.resources.coordination_v1 import Lease

from treadle.api import RUN_NOW_ANNOTATION
from treadle.core import gates, timestamps
from treadle.plugin import flags, objects
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


def lock_list(client: Client, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    rows = []
    for lease in client.list(Lease):
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
    if not rows:
        print("No locks.")
        return 0
    print(table(["KIND", "NAME", "HOLDER", "EXPIRES IN", "TRANSITIONS"], rows))
    return 0


def _get_job(client: Client, name: str) -> Any:
    return objects.get(client, kube.SyncJob, "sync job", name)


def sync_run(client: Client, args: argparse.Namespace) -> int:
    _get_job(client, args.job)
    asked = timestamps.text(datetime.now(UTC))
    taken = objects.ask(
        client, kube.SyncJob, "sync job", args.job, RUN_NOW_ANNOTATION, asked, args.timeout
    )
    what = "taken up by the operator" if taken is not None else "requested"
    print(f"sync job {args.job}: run {what} ({asked})")
    return 0


def sync_status(client: Client, args: argparse.Namespace) -> int:
    job = _get_job(client, args.job)
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
        ("Consecutive failures", status.get("consecutiveFailures")),
        ("Last success", status.get("lastSuccessfulTime")),
        ("Ready", _condition(found.get("Ready"))),
        ("Degraded", _condition(found.get("Degraded"))),
    ]
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"{label + ':':<{width}} {'' if value is None else value}")
    return 0


def _condition(condition: dict[str, Any] | None) -> str | None:
    if condition is None:
        return None
    message = condition.get("message")
    return f"{condition['status']} ({condition.get('reason')}{': ' + message if message else ''})"
