"""`kubectl treadle ui [--port 8080]`: a local, read-only web page of a namespace's workflows
(each as a graph of its tasks coloured by phase, live, with each task's attempts, output, logs
and dead letters) and sync jobs (slots, locks, runs).

The page is served on 127.0.0.1 only, by this process, with the user's own kubeconfig: nothing
is installed in the cluster and no credential is made.  Every request the page makes is a GET
this server turns into reads of the API server (logs through the log API), so the page sees
exactly what its user may see.  A random token in the URL it prints (kept in a cookie) keeps
other local users and web pages from borrowing those credentials; the Host header must be the
loopback address (no DNS rebinding).  Changes reach the page as server-sent events from
watches of the namespace's workflows and sync jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import webbrowser
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web
from lightkube import ApiError, AsyncClient, Client
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Namespace, Pod

from treadle.core.runbodies import LABEL_SYNCJOB
from treadle.plugin import flags, logs, pages, syncjobs
from treadle.services import kube

COOKIE = "treadle_ui"
MAX_LISTED = 500
"""Workflows or sync jobs one list shows (newest first)."""
MAX_RUNS = 50
STATIC = "treadle.plugin.web"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
KEEPALIVE_SECONDS = 15.0


def add_commands(commands: Any) -> None:
    ui = flags.command_parser(
        commands, "ui", help="a local web page of the namespace's workflows and sync jobs"
    )
    ui.add_argument("--port", type=int, default=8080, help="default: 8080 (0: any free port)")
    ui.add_argument("--open", action="store_true", help="open it in the default browser")
    ui.set_defaults(handler=serve_ui)


def _api_error(error: ApiError) -> web.Response:
    code = error.status.code or 500
    return web.json_response({"message": error.status.message, "code": code}, status=code)


class Ui:
    """The page's server: static files, read-only JSON views, and a stream of changes."""

    def __init__(self, api: AsyncClient, namespace: str, context: str, token: str) -> None:
        self.api = api
        self.namespace = namespace
        self.context = context
        self.token = token

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        get = app.router.add_get
        get("/", self._index)
        get("/static/{path:.+}", self._static)
        get("/api/context", self._context)
        get("/api/workflows", self._workflows)
        get("/api/workflows/{namespace}/{name}", self._workflow)
        get("/api/workflows/{namespace}/{name}/logs", self._logs)
        get("/api/syncjobs", self._syncjobs)
        get("/api/syncjobs/{namespace}/{name}", self._syncjob)
        get("/api/events", self._events)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        host = request.host.rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):
            return web.Response(status=403, text="only http://127.0.0.1 serves this page")
        if request.query.get("token") == self.token and request.path == "/":
            entry = web.HTTPFound("/")
            entry.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
            return entry
        if not secrets.compare_digest(request.cookies.get(COOKIE, ""), self.token):
            return web.Response(
                status=401, text="open the address kubectl treadle ui printed (with its token)"
            )
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as error:
            return _api_error(error)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self'; img-src 'self' data:"
        )
        return response

    async def _index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["path"])

    def _file(self, path: str) -> web.Response:
        parts = path.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise web.HTTPNotFound()
        entry = resources.files(STATIC).joinpath(*parts)
        suffix = "." + path.rsplit(".", 1)[-1]
        if not entry.is_file() or suffix not in CONTENT_TYPES:
            raise web.HTTPNotFound()
        return web.Response(body=entry.read_bytes(), content_type=CONTENT_TYPES[suffix])

    async def _context(self, request: web.Request) -> web.Response:
        names = [self.namespace]
        with contextlib.suppress(ApiError):  # a user who may not list namespaces sees theirs
            listed = [n.metadata.name async for n in self.api.list(Namespace) if n.metadata]
            names = sorted({*(name for name in listed if name), self.namespace})
        return web.json_response(
            {"namespace": self.namespace, "context": self.context, "namespaces": names}
        )

    def _namespace(self, request: web.Request) -> str:
        return request.query.get("namespace") or self.namespace

    async def _workflows(self, request: web.Request) -> web.Response:
        found = [
            dict(w) async for w in self.api.list(kube.Workflow, namespace=self._namespace(request))
        ]
        found.sort(key=lambda w: str(w["metadata"].get("creationTimestamp")), reverse=True)
        now = datetime.now(UTC)
        return web.json_response([pages.workflow_row(w, now) for w in found[:MAX_LISTED]])

    async def _workflow(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        found = dict(await self.api.get(kube.Workflow, name, namespace=namespace))
        return web.json_response(
            {
                "workflow": pages.without_managed_fields(found),
                "row": pages.workflow_row(found),
                "graph": pages.graph(found),
            }
        )

    async def _logs(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        query = {k: v for k, v in request.query.items() if k in ("task", "item", "attempt")}
        path = f"{logs.LOG_API}/namespaces/{namespace}/workflowlogs/{name}"
        reply = await self.api._client._client.get(path, params=query)
        return web.Response(
            body=reply.content, status=reply.status_code, content_type="application/json"
        )

    async def _syncjobs(self, request: web.Request) -> web.Response:
        found = [
            dict(j) async for j in self.api.list(kube.SyncJob, namespace=self._namespace(request))
        ]
        found.sort(key=lambda j: str(j["metadata"].get("name")))
        return web.json_response([pages.syncjob_row(j) for j in found[:MAX_LISTED]])

    async def _syncjob(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        job = dict(await self.api.get(kube.SyncJob, name, namespace=namespace))
        selector: dict[str, Any] = {LABEL_SYNCJOB: name}
        runs: list[Mapping[str, Any]] = []
        with contextlib.suppress(ApiError):
            async for workflow in self.api.list(
                kube.Workflow, namespace=namespace, labels=selector
            ):
                runs.append({**dict(workflow), "kind": "Workflow"})
        with contextlib.suppress(ApiError):
            async for pod in self.api.list(Pod, namespace=namespace, labels=selector):
                runs.append({**pod.to_dict(), "kind": "Pod"})
        wanted = syncjobs.job_locks(job)
        locks: list[dict[str, Any]] = []
        with contextlib.suppress(ApiError):
            leases = [lease async for lease in self.api.list(Lease, namespace=namespace)]
            for kind, lock, holder, until, transitions in syncjobs.lock_rows(
                leases, datetime.now(UTC)
            ):
                if (kind, lock) in wanted:
                    locks.append(
                        {"kind": kind, "name": lock, "holder": holder, "expiresIn": until,
                         "transitions": transitions}
                    )  # fmt: skip
        return web.json_response(pages.syncjob_page(job, runs[: MAX_RUNS * 2], locks))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: a row for each workflow or sync job of the namespace that
        changed (the page then reads what it shows of it again)."""
        namespace = self._namespace(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        changes: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        watches = [
            asyncio.create_task(self._watch(kube.Workflow, namespace, changes)),
            asyncio.create_task(self._watch(kube.SyncJob, namespace, changes)),
        ]
        try:
            while True:
                try:
                    change = await asyncio.wait_for(changes.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"data: {json.dumps(change)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for watch in watches:
                watch.cancel()
            await asyncio.gather(*watches, return_exceptions=True)
        return response

    async def _watch(
        self, kind: Any, namespace: str, changes: asyncio.Queue[dict[str, Any]]
    ) -> None:
        async for change in _changes(self.api, kind, namespace):
            with contextlib.suppress(asyncio.QueueFull):  # a page that reads nothing
                changes.put_nowait(change)


async def _changes(api: AsyncClient, kind: Any, namespace: str) -> AsyncIterator[dict[str, Any]]:
    """Each change of an object of `kind` in `namespace`, as the row the page lists."""
    while True:
        try:
            async for event, found in api.watch(kind, namespace=namespace):
                body = dict(found)
                row = pages.workflow_row(body) if kind is kube.Workflow else pages.syncjob_row(body)
                yield {"type": event, **row}
        except asyncio.CancelledError:
            raise
        except Exception:  # may not watch, or the API server is away: try again
            await asyncio.sleep(5)


def serve_ui(client: Client, args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(24)
    api = AsyncClient(client.config, namespace=client.namespace)
    context = getattr(client.config, "context_name", "") or ""
    ui = Ui(api, client.namespace, str(context), token)

    async def run() -> None:
        # Ctrl-C: the page's open event streams need not be waited for.
        runner = web.AppRunner(ui.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = runner.addresses[0][1]
        address = f"http://127.0.0.1:{port}/?token={token}"
        print(f"Treadle UI on {address}  (namespace {client.namespace}; Ctrl-C stops it)")
        sys.stdout.flush()
        if args.open:
            webbrowser.open(address)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await api.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0
