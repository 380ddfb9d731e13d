"""Runs the operator: kopf with the project's registry, JSON logs, metrics and a health probe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf
import prometheus_client
from lightkube import ApiError

from treadle.controllers import driver, jobtasks, liveness, logapi, scheduler
from treadle.controllers.leadership import Leadership
from treadle.controllers.pools import PoolKeeper
from treadle.core import admission

# Importing the handler modules registers them in the project's registry.
from treadle.handlers import jobtasks as jobtask_handlers  # noqa: F401
from treadle.handlers import (  # noqa: F401
    pods,
    pools,
    settings,
    syncjobs,
    validation,
    workflows,
)
from treadle.handlers.registry import registry
from treadle.runtime import Directive, Loop, Pacing, TaskSet, poker
from treadle.services import certificates, kube, pool_users, queues
from treadle.services.leases import Held, LeaseStore
from treadle.services.results import ResultStream

log = logging.getLogger(__name__)

SCHEDULER_SAFETY_SECONDS = 60.0
LOST_LEADERSHIP_EXIT_CODE = 3
LEADER_LABEL = "treadle.dev/leader"
WEBHOOK_BODY_LIMIT_BYTES = 16 * 1024 * 1024
"""The largest AdmissionReview the webhook reads: above anything the API server sends (it
takes request bodies up to 3 MiB, and an UPDATE's review carries the object twice), so the
webhook never answers 413 for size (aiohttp's default is 1 MiB)."""


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty serves the whole cluster."""
    health_address: str = "127.0.0.1:8080"
    """host:port of the readiness endpoint (/healthz, kopf's: answers once this replica leads)."""
    liveness_address: str = ""
    """host:port of /livez, answered by the event loop itself from the start; empty: none."""
    metrics_address: str = "127.0.0.1:9090"
    """host:port of the Prometheus metrics endpoint; empty disables it."""
    redis_url: str = ""
    """Redis for the task queue; empty: admission only, nothing runs."""
    worker_redis_url: str = ""
    """Where worker pods reach Redis (e.g. through a Service); empty: the operator's URL.  With
    pool users its user and password are replaced by each pool's own."""
    pool_users: bool = True
    """Give each pool's workers a Redis user of their own (the operator refuses a Redis that
    cannot); False: every worker gets the worker URL, with all its rights."""
    worker_image: str = "treadle:dev"
    """Image of worker pods whose workflow names none."""
    worker_metrics_port: int = 0
    """Port worker pods serve Prometheus metrics on; 0 (default): none."""
    consumer: str = "treadle-operator"
    """This operator's name in the results stream's consumer group."""
    webhook_address: str = ""
    """host:port of the admission webhook the operator serves and registers; empty: none."""
    log_format: str = "json"
    verbose: bool = False
    webhook_service: str = ""
    """namespace/name:port of the Service the API server reaches the webhook through; empty:
    by URL, at the webhook address."""
    webhook_cert_dir: str = ""
    """Directory with the webhook's tls.crt, tls.key and ca.crt; empty: generate them."""
    webhook_client_ca: str = ""
    """CA file the API server's client certificate is signed by; empty: no client check."""
    webhook_client_names: tuple[str, ...] = ()
    """Subjects (common names) the webhook answers; empty: any the CA signed."""
    logs_address: str = ""
    """host:port of the log API the operator serves and registers (APIService
    v1alpha1.logs.treadle.dev); empty: none."""
    logs_service: str = "treadle-system/treadle-logs"
    """namespace/name of the Service (port 443) the API server reaches the log API through."""
    logs_publish: bool = False
    """Make that Service here, without a selector, pointing at the log address (an operator
    outside any pod); False: the chart made it."""
    leader_election_namespace: str = ""
    """Namespace of the leader Lease; empty: no election (one replica only)."""
    pod_name: str = ""
    """The operator's pod ($POD_NAME): its name in the leader Lease, and the pod the leader
    labels; outside a pod, the Lease holder is <host>-<pid>."""
    stop_flag: asyncio.Event | None = field(default=None, compare=False)


class TreadleWebhookServer(kopf.WebhookServer):
    """kopf's webhook server, optionally registered as reached through a Service (in a
    cluster) rather than by URL, and optionally answering only the API server: a client
    certificate signed by `verify_cafile` is required at the TLS handshake, and its subject
    must be one of `client_names` (SPEC: the webhook accepts only the API server's client
    certificate; the cluster CA signs users' certificates too)."""

    def __init__(
        self,
        *,
        service: tuple[str, str, int] | None = None,
        client_names: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.client_names = client_names

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async def guarded(data: Any, *, sslpeer: Any = None, **kwargs: Any) -> Any:
            refusal = admission.client_refusal(_peer_names(sslpeer), self.client_names)
            if refusal is not None:
                log.warning("webhook call refused: %s", refusal)
                uid = ((data or {}).get("request") or {}).get("uid", "")
                return {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": {
                        "uid": uid,
                        "allowed": False,
                        "status": {"code": 403, "message": refusal},
                    },
                }
            return await fn(data, sslpeer=sslpeer, **kwargs)

        handler = guarded if self.verify_cafile is not None else fn
        async for config in super().__call__(handler):  # type: ignore[arg-type]
            if self.service is None:
                yield config
                continue
            namespace, name, port = self.service
            found: dict[str, Any] = {
                "service": {"namespace": namespace, "name": name, "port": port, "path": ""}
            }
            if config.get("caBundle"):
                found["caBundle"] = config["caBundle"]
            yield found

    @staticmethod
    async def _serve(fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
        # kopf makes its aiohttp app with the default 1 MiB body limit: a bigger review got
        # 413 and, failing open, went unchecked.  Read every review the API server can send.
        roomy = request.clone(client_max_size=WEBHOOK_BODY_LIMIT_BYTES)
        return await kopf.WebhookServer._serve(fn, roomy)


def _peer_names(peer: Any) -> list[str]:
    """The common names of a TLS peer certificate as ssl's getpeercert() gives it."""
    names: list[str] = []
    for part in (peer or {}).get("subject", ()):
        names += [value for key, value in part if key == "commonName"]
    return names


def _webhook_server(
    address: str,
    service: str = "",
    cert_dir: str = "",
    client_ca: str = "",
    client_names: tuple[str, ...] = (),
) -> kopf.WebhookServer:
    """A TLS webhook server on `address` with a fresh self-signed CA for its certificate, or
    with the certificate in `cert_dir` (tls.crt, tls.key, ca.crt, e.g. from cert-manager; it
    is reloaded when it changes); with `service` ("namespace/name:port") the API server reaches
    it through that Service; with `client_ca`, only callers presenting a certificate it signed
    (with a subject in `client_names`, when given) are answered."""
    host, port = _split(address)
    names = [host, "localhost"]
    target = None
    if service:
        namespace, _, rest = service.partition("/")
        name, _, service_port = rest.partition(":")
        target = (namespace, name, int(service_port or 443))
        names += [name, f"{name}.{namespace}", f"{name}.{namespace}.svc"]
        names.append(f"{name}.{namespace}.svc.cluster.local")
    if cert_dir:
        directory = Path(cert_dir)
    else:
        ca, cert, key = certificates.serving_pair("treadle-webhook", tuple(names))
        directory = Path(tempfile.mkdtemp(prefix="treadle-webhook-"))
        for file, pem in (("ca.crt", ca), ("tls.crt", cert), ("tls.key", key)):
            (directory / file).write_bytes(pem)
    cafile, certfile, pkeyfile = (str(directory / f) for f in ("ca.crt", "tls.crt", "tls.key"))
    verify: dict[str, Any] = {}
    if client_ca:
        verify = {"verify_mode": ssl.CERT_REQUIRED, "verify_cafile": client_ca}
    return TreadleWebhookServer(
        service=target,
        client_names=client_names,
        addr=host,
        port=port,
        host=None if target is not None else host,
        cafile=cafile,
        certfile=certfile,
        pkeyfile=pkeyfile,
        **verify,
    )


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


async def run(options: OperatorOptions) -> None:
    kopf.configure(
        verbose=options.verbose,
        log_format=kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object" if options.log_format == "json" else None,
    )
    if not options.verbose:
        # One line per API request is noise at INFO (and, at a thousand workflows a minute,
        # a measurable share of the operator's time).
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if options.metrics_address:
        host, port = _split(options.metrics_address)
        prometheus_client.start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
    live = None
    if options.liveness_address:
        host, port = _split(options.liveness_address)
        live = await liveness.serve(host, port)
        log.info("liveness on http://%s:%d/livez", host, port)
    leadership = None
    held = None
    if options.leader_election_namespace:
        store = LeaseStore(kube.client(), options.leader_election_namespace)
        identity = options.pod_name or f"{socket.gethostname()}-{os.getpid()}"
        leadership = Leadership(store, identity)
        pod = options.pod_name and (options.leader_election_namespace, options.pod_name)
        if pod:
            await kube.label_pod(kube.client(), *pod, LEADER_LABEL, "false")
        held = await leadership.acquire()
        if pod:
            # The Redis and webhook Services select the leader's pod: first take the label off
            # a predecessor that lost the Lease without noticing (wedged), then put it here.
            namespace, name = pod
            gone = await kube.unlabel_other_pods(
                kube.client(), namespace, name, LEADER_LABEL, "true"
            )
            for other in gone:
                log.warning("took the leader label off %s, which no longer holds the Lease", other)
            await kube.label_pod(kube.client(), *pod, LEADER_LABEL, "true")
    operator_settings = kopf.OperatorSettings()
    if options.webhook_address:
        validation.register(registry)
        operator_settings.admission.server = _webhook_server(
            options.webhook_address,
            options.webhook_service,
            options.webhook_cert_dir,
            options.webhook_client_ca,
            options.webhook_client_names,
        )
        operator_settings.admission.managed = validation.WEBHOOK_CONFIGURATION
    memo = kopf.Memo()
    tasks = TaskSet()
    logs: logapi.Served | None = None
    redis_client = None
    if options.redis_url:
        redis_client = queues.connect(options.redis_url)
        try:
            await queues.refuse_eviction(redis_client)
        except queues.EvictingRedis as error:
            log.error("%s", error)
            await redis_client.aclose()
            raise SystemExit(2) from error
        users = None
        if options.pool_users:
            try:
                users = await pool_users.PoolUsers.start(redis_client, options.redis_url)
            except pool_users.PoolUsersUnavailable as error:
                log.error(
                    "%s; or start the operator with --no-pool-users (every worker then gets "
                    "full rights on Redis, so any task's code can read and forge every "
                    "workflow's queue)",
                    error,
                )
                await redis_client.aclose()
                raise SystemExit(2) from error
        else:
            log.warning("pool users are off: every worker gets full rights on Redis")
        results = ResultStream(redis_client, options.consumer)
        memo.pools = PoolKeeper(
            kube.client(),
            results,
            options.worker_redis_url or options.redis_url,
            options.worker_image,
            users=users.twin() if users is not None else None,
            metrics_port=options.worker_metrics_port,
        )
        memo.jobtasks = await jobtasks.JobTasks.start(
            kube.client(),
            redis_client,
            lambda uid: memo.driver.tracks(uid),
            lambda uid, task, item: memo.driver.launched(uid, task, item),
        )
        memo.driver = driver.Driver(
            results,
            kube.client(),
            options.worker_redis_url or options.redis_url,
            options.worker_image,
            users=users,
            worker_metrics_port=options.worker_metrics_port,
            pool_ready=memo.pools.ready,
            jobs=memo.jobtasks,
        )
        if options.logs_address:
            logs = await _serve_logs(options, results)
        keeper = Loop("pool-keeper", memo.pools, tasks.cancel, start=Directive.proceed())
        tasks.spawn("pool-keeper", keeper.run())
        loop = Loop(
            "engine-driver",
            memo.driver,
            tasks.cancel,
            start=Directive.proceed(),
            pacing=Pacing(min_interval_seconds=driver.PASS_INTERVAL_SECONDS),
        )
        tasks.spawn("engine-driver", loop.run())
        tasks.spawn("job-tasks", memo.jobtasks.run())
    memo.scheduler = scheduler.Scheduler(kube.client())
    # The scheduler's timer wakes it when a job is due; the poker is the safety net.
    safety, _poking = poker(SCHEDULER_SAFETY_SECONDS, tasks.cancel)
    sync_loop = Loop(
        "sync-scheduler",
        memo.scheduler,
        tasks.cancel,
        notifiers=[memo.scheduler.wake, safety],
        start=Directive.proceed(),
    )
    tasks.spawn("sync-scheduler", sync_loop.run())
    try:
        if leadership is not None and held is not None:
            try:
                await _lead(leadership, held, _run_kopf(options, operator_settings, memo))
            except SystemExit:
                if pod:  # lost the Lease: stop being selected by the leader's Services at once
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(
                            kube.label_pod(kube.client(), *pod, LEADER_LABEL, "false"), 5
                        )
                raise
        else:
            await _run_kopf(options, operator_settings, memo)
    finally:
        if live is not None:
            live.close()
        if logs is not None:
            await logs.close()
        await tasks.shutdown(grace_seconds=10)
        if redis_client is not None:
            await redis_client.aclose()
        if leadership is not None and held is not None:
            await leadership.release(held)


async def _serve_logs(options: OperatorOptions, results: ResultStream) -> logapi.Served | None:
    """Serves the log API and registers it with the API server (the leader does: the
    registration names its certificate's CA)."""
    namespace, _, name = options.logs_service.partition("/")
    served = await logapi.serve(kube.client(), results, options.logs_address, (namespace, name))
    if served is not None:
        host, port = _split(options.logs_address)
        endpoint = (host, port) if options.logs_publish else None
        try:
            await kube.publish_log_api(kube.client(), (namespace, name), served.ca_pem, endpoint)
        except ApiError as error:  # the workflows run without it; `logs` says it is missing
            log.error("could not register the log API (%s): %s", error.status.code, error)
    return served


async def _lead(leadership: Leadership, held: Held, work: Coroutine[Any, Any, None]) -> None:
    """Runs `work` while the leadership lasts; losing it stops the work and fails the process
    (it restarts as a standby)."""
    working = asyncio.ensure_future(work)
    keeping = asyncio.ensure_future(leadership.keep(held))
    try:
        done, _ = await asyncio.wait({working, keeping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (working, keeping):
            task.cancel()
        await asyncio.gather(working, keeping, return_exceptions=True)
    if keeping in done:
        raise SystemExit(LOST_LEADERSHIP_EXIT_CODE)
    working.result()


async def _run_kopf(
    options: OperatorOptions, operator_settings: kopf.OperatorSettings, memo: kopf.Memo
) -> None:
    await kopf.operator(
        registry=registry,
        settings=operator_settings,
        memo=memo,
        standalone=True,
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
        liveness_endpoint=f"http://{options.health_address}/healthz",
        stop_flag=options.stop_flag,
    )
