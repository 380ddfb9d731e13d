"""The log API: `kubectl treadle logs` and `kubectl treadle ui` read task attempts' logs
through the Kubernetes API server, which authenticates the user and forwards the request here
(an aggregated API, group `logs.treadle.dev`).  The API server lets through only users RBAC
allows to `get workflowlogs.logs.treadle.dev` in the namespace (as `pods/log` for pod logs);
this server answers only the API server's front proxy, asks the same question again (a
SubjectAccessReview), and reads the logs from Redis.  No credential of the user's reaches the
operator, and no one but the operator reaches Redis.

    GET /apis/logs.treadle.dev/v1alpha1/namespaces/NS/workflowlogs/WF?task=T&item=N&attempt=K
"""

from __future__ import annotations

import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from lightkube import ApiError, AsyncClient
from pydantic import ValidationError
from redis.exceptions import RedisError

from treadle.api.workflows import WorkflowStatus
from treadle.core import admission, tasklogs
from treadle.core.admission import FINAL_PHASES
from treadle.core.delegation import FrontProxy
from treadle.services import certificates, kube, taskjobs
from treadle.services.results import ResultStream

log = logging.getLogger(__name__)

API_VERSION = f"{kube.LOG_API_GROUP}/{kube.LOG_API_VERSION}"
PREFIX = f"/apis/{API_VERSION}"
RESOURCE = "workflowlogs"
LIVE_TAIL_LINES = 2000
"""How much of a running job step's pod log a read shows (at most tasklogs.LOG_LIMIT_BYTES)."""
KIND = "WorkflowLog"
DISCOVERY = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": API_VERSION,
    "resources": [
        {
            "name": RESOURCE,
            "singularName": "workflowlog",
            "namespaced": True,
            "kind": KIND,
            "verbs": ["get"],
        }
    ],
}
# The API server fetches the OpenAPI of every aggregated API; this one documents no schema.
OPENAPI_V2 = {
    "swagger": "2.0",
    "info": {"title": "Treadle logs", "version": "v1alpha1"},
    "paths": {},
}
OPENAPI_V3: dict[str, Any] = {"paths": {}}


def status(code: int, reason: str, message: str) -> web.Response:
    """A failure as the API server words one (kubectl prints its message)."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def _peer_names(request: web.Request) -> list[str] | None:
    """The common names of the client certificate the front-proxy CA signed (None: none)."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return None
    names: list[str] = []
    for part in peer.get("subject", ()):
        names += [value for key, value in part if key == "commonName"]
    return names


def _number(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or len(text) > 9:
        raise web.HTTPBadRequest(reason=f"{name} must be a whole number, not {text[:40]!r}")
    return int(text)


@dataclass
class LogApi:
    api: AsyncClient
    results: ResultStream
    proxy: FrontProxy

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._front_proxy_only])
        app.router.add_get(PREFIX, self._discovery)
        app.router.add_get("/openapi/v2", self._openapi)
        app.router.add_get("/openapi/v3", self._openapi)
        app.router.add_get(f"{PREFIX}/namespaces/{{namespace}}/{RESOURCE}/{{name}}", self._logs)
        return app

    @web.middleware
    async def _front_proxy_only(self, request: web.Request, handler: Any) -> web.StreamResponse:
        refusal = self.proxy.refusal(_peer_names(request))
        if refusal is not None:
            return status(401, "Unauthorized", f"only the Kubernetes API server: {refusal}")
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPBadRequest as error:
            return status(400, "BadRequest", error.reason)
        except web.HTTPNotFound:
            return status(404, "NotFound", f"no such path: {request.path}")
        except (ApiError, RedisError, OSError) as error:  # the API server or Redis away
            log.warning("log API: %s failed: %s", request.path, error)
            return status(503, "ServiceUnavailable", f"cannot read logs now: {error}")
        return response

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(DISCOVERY)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI_V2 if request.path.endswith("v2") else OPENAPI_V3)

    async def _logs(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        user = self.proxy.user(request.headers.items())
        if user is None:
            return status(401, "Unauthorized", "the request names no user")
        task = request.query.get("task") or None
        item, attempt = _number(request, "item"), _number(request, "attempt")
        # The API server authorized this request before forwarding it; asked again here, as
        # every aggregated API server does (delegated authorization), so that nothing but
        # RBAC decides who reads logs, however this server came to be called.
        allowed = await kube.may(
            self.api,
            user.review_subject(),
            namespace=namespace,
            verb="get",
            group=kube.LOG_API_GROUP,
            resource=RESOURCE,
            name=name,
        )
        if not allowed:
            return status(
                403,
                "Forbidden",
                f'{RESOURCE}.{kube.LOG_API_GROUP} "{name}" is forbidden: User "{user.name}" '
                f'cannot get resource "{RESOURCE}" in API group "{kube.LOG_API_GROUP}" in the '
                f'namespace "{namespace}"',
            )
        workflow = await kube.get_workflow(self.api, namespace, name)
        if workflow is None:
            return status(404, "NotFound", f'workflow "{name}" not found in "{namespace}"')
        tasks = (workflow.get("status") or {}).get("tasks") or {}
        if task is not None and task not in tasks:
            known = ", ".join(sorted(tasks)[:20]) or "none yet"
            return status(404, "NotFound", f'workflow "{name}" has no task "{task}" ({known})')

        async def may_read_pod_logs() -> bool:
            return await kube.may(
                self.api, user.review_subject(), namespace=namespace, verb="get",
                resource="pods", subresource="log",
            )  # fmt: skip

        return web.json_response(
            await self._answer(workflow, task, item, attempt, may_read_pod_logs)
        )

    async def _answer(
        self,
        workflow: dict[str, Any],
        task: str | None,
        item: int | None,
        attempt: int | None,
        may_read_pod_logs: Callable[[], Awaitable[bool]],
    ) -> dict[str, Any]:
        """The attempts' logs.  A `job` step's log is its pod's, unmasked (Treadle does not
        read the Secrets its pod is handed): it is shown only to a reader who may read pod
        logs in the namespace, as `kubectl logs` asks."""
        meta, raw = workflow.get("metadata") or {}, workflow.get("status") or {}
        try:
            current = WorkflowStatus.of(raw)
        except ValidationError:
            current = WorkflowStatus()
        pools, own = admission.task_pools_of(workflow.get("spec"), raw, meta)
        wanted = tasklogs.addresses(
            current, task, item, attempt, order=list(pools), ended=current.phase in FINAL_PHASES
        )
        texts = await self.results.read_logs(
            str(meta.get("uid", "")),
            current.run_generation,
            [(pools.get(a.task, own), a) for a in wanted[: tasklogs.MAX_ATTEMPTS_PER_ANSWER]],
            limit_bytes=tasklogs.MAX_ANSWER_BYTES,
        )
        shown = wanted[: len(texts)]
        spec = workflow.get("spec") if isinstance(workflow.get("spec"), dict) else None
        pods = {a.task for a in shown if tasklogs.own_pod_task(current, spec, a.task)}
        allowed = bool(pods) and await may_read_pod_logs()
        texts = [
            (None, False)
            if address.task in pods and not allowed
            else await self._from_pod(meta, current, spec, address, found)
            for address, found in zip(shown, texts, strict=True)
        ]
        attempts = []
        for address, (text, live) in zip(shown, texts, strict=True):
            entry: dict[str, Any] = {"task": address.task, "attempt": address.attempt}
            if address.item is not None:
                entry["item"] = address.item
            entry["ended"] = address.ended
            entry["stored"] = text is not None
            entry["live"] = live
            if text is not None:
                entry["log"] = text
            elif address.task in pods and not allowed:
                entry["note"] = "a job step's log is its pod's: reading it takes get pods/log"
            attempts.append(entry)
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
            "phase": current.phase,
            "tasks": {n: e.phase for n, e in current.tasks.items()},
            "attempts": attempts,
            "omitted": len(wanted) - len(shown),
        }

    async def _from_pod(
        self,
        meta: dict[str, Any],
        current: WorkflowStatus,
        spec: dict[str, Any] | None,
        address: tasklogs.Address,
        found: tuple[str | None, bool],
    ) -> tuple[str | None, bool]:
        """A running `job` step's log so far, read from its pod (its stored copy comes when
        it ends); else what Redis held."""
        if found[0] is not None:
            return found
        pod = tasklogs.running_pod(current, spec, address)
        if pod is None:
            return found
        namespace = str(meta.get("namespace"))
        read = await taskjobs.read_log(
            self.api, namespace, pod, tasklogs.LOG_LIMIT_BYTES, tail_lines=LIVE_TAIL_LINES
        )
        return (read[0], True) if read is not None else found


@dataclass
class Served:
    runner: web.AppRunner
    ca_pem: bytes

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve(
    api: AsyncClient, results: ResultStream, address: str, service: tuple[str, str]
) -> Served | None:
    """Starts the log API on `address` (host:port) with a fresh serving certificate for
    `service`; None when the API server forwards to no aggregated API."""
    proxy = await kube.front_proxy(api)
    if proxy is None:
        log.warning(
            "the API server sets no front-proxy CA (--requestheader-client-ca-file): "
            "no log API, kubectl treadle logs cannot read task logs"
        )
        return None
    namespace, name = service
    host, _, port = address.rpartition(":")
    names = (name, f"{name}.{namespace}", f"{name}.{namespace}.svc", host or "localhost")
    ca, cert, key = certificates.serving_pair("treadle-logs", names)
    directory = Path(tempfile.mkdtemp(prefix="treadle-logs-"))
    (directory / "tls.crt").write_bytes(cert)
    (directory / "tls.key").write_bytes(key)
    (directory / "tls.key").chmod(0o600)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=proxy.ca_pem)
    runner = web.AppRunner(LogApi(api, results, proxy).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port), ssl_context=context).start()
    log.info("log API on https://%s (aggregated as %s)", address, API_VERSION)
    return Served(runner, ca)
