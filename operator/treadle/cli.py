"""The `treadle` command: the operator process and tools around it."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from pathlib import Path

import treadle
from treadle.core.workerpods import WORKER_NAME_ENV


def _operator(args: argparse.Namespace) -> int:
    from treadle.handlers import runner

    options = runner.OperatorOptions(
        namespaces=tuple(args.namespace or ()),
        health_address=args.health_address,
        liveness_address=args.liveness_address,
        metrics_address=args.metrics_address,
        webhook_address=args.webhook_address,
        redis_url=args.redis_url or "",
        worker_redis_url=args.worker_redis_url or "",
        pool_users=args.pool_users,
        worker_image=args.worker_image,
        worker_metrics_port=args.worker_metrics_port,
        log_format=args.log_format,
        verbose=args.verbose,
        leader_election_namespace=args.leader_election_namespace,
        webhook_service=args.webhook_service,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_client_ca=args.webhook_client_ca,
        webhook_client_names=tuple(args.webhook_client_name or ()),
        logs_address=args.logs_address,
        logs_service=args.logs_service,
        logs_publish=args.logs_publish,
        pod_name=os.environ.get("POD_NAME", ""),
    )
    asyncio.run(runner.run(options))
    return 0


def _worker_logging(log_format: str) -> None:
    import logging

    handler = logging.StreamHandler()
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "severity", "asctime": "timestamp"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _worker(args: argparse.Namespace) -> int:
    import signal

    from treadle.worker import serving

    if not args.redis_url:
        print("treadle worker: set --redis-url or TREADLE_REDIS_URL", file=sys.stderr)
        return 2
    # Read once: task code (a `python:` callable runs in this process) finds no credentials
    # in the environment, and commands get none (worker/runners.HIDDEN_ENV).
    os.environ.pop("TREADLE_REDIS_URL", None)
    _worker_logging(args.log_format)
    if args.metrics_address:
        import prometheus_client

        host, _, port = args.metrics_address.rpartition(":")
        prometheus_client.start_http_server(int(port), addr=host or "0.0.0.0")
    options = serving.WorkerOptions(
        redis_url=args.redis_url,
        pool=args.pool,
        consumer=args.consumer,
        name=args.name,
        concurrency=args.concurrency,
        reap_idle_seconds=args.reap_idle_seconds,
        drain_seconds=args.drain_seconds,
        watchdog=True,  # a worker process of its own: killed, not reaped, when frozen
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serving.serve(options, stop)

    asyncio.run(main())
    return 0


def _crds(args: argparse.Namespace) -> int:
    from treadle.api import crds

    if args.output:
        for path in crds.write(Path(args.output)):
            print(path)
    else:
        sys.stdout.write("---\n".join(crds.render(c) for c in crds.definitions().values()))
    return 0


def _ensure_secret(args: argparse.Namespace) -> int:
    from lightkube import AsyncClient

    from treadle.services import kube

    async def main() -> bool:
        api = AsyncClient()
        try:
            return await kube.ensure_random_secret(api, args.namespace, args.name, args.key)
        finally:
            await api.close()

    made = asyncio.run(main())
    state = "made" if made else "exists, kept"
    print(f"secret {args.namespace}/{args.name}: {state}")
    return 0


def _version(_: argparse.Namespace) -> int:
    print(treadle.__version__)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="treadle", description=treadle.__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    operator = commands.add_parser("operator", help="run the operator against the current cluster")
    operator.add_argument(
        "-n", "--namespace", action="append", help="serve this namespace (repeatable); default all"
    )
    operator.add_argument(
        "--health-address", default="127.0.0.1:8080", help="host:port of /healthz"
    )
    operator.add_argument(
        "--liveness-address",
        default="",
        help="host:port of /livez, answered by the operator's event loop itself (a probe on it "
        "fails while the loop is stuck); '' (default) disables",
    )
    operator.add_argument(
        "--metrics-address", default="127.0.0.1:9090", help="host:port of /metrics; '' disables"
    )
    operator.add_argument(
        "--redis-url",
        default=os.environ.get("TREADLE_REDIS_URL"),
        help="Redis of the task queue (default $TREADLE_REDIS_URL); without it nothing runs",
    )
    operator.add_argument(
        "--worker-redis-url",
        default=os.environ.get("TREADLE_WORKER_REDIS_URL"),
        help="the Redis URL worker pods get, e.g. through a Service "
        "(default $TREADLE_WORKER_REDIS_URL, else --redis-url)",
    )
    operator.add_argument(
        "--pool-users",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("TREADLE_POOL_USERS", "on") != "off",
        help="give each pool's workers a Redis ACL user allowed only that pool's keys (default "
        "on; $TREADLE_POOL_USERS=off or --no-pool-users for a Redis without ACLs, and every "
        "worker gets full rights)",
    )
    operator.add_argument(
        "--worker-image",
        default="treadle:dev",
        help="image of worker pods (spec.workers.image wins)",
    )
    operator.add_argument(
        "--worker-metrics-port",
        type=int,
        default=0,
        help="port worker pods serve Prometheus metrics on; 0 (default): none",
    )
    operator.add_argument(
        "--webhook-address",
        default="",
        help="host:port to serve the admission webhook on and register it; '' (default): none",
    )
    operator.add_argument(
        "--webhook-service",
        default="",
        help="namespace/name:port of the Service the API server reaches the webhook through "
        "(in a cluster); '' (default): by URL at --webhook-address",
    )
    operator.add_argument(
        "--webhook-cert-dir",
        default="",
        help="directory with the webhook's tls.crt, tls.key and ca.crt (e.g. a cert-manager "
        "Secret, reloaded when renewed); '' (default): generate a self-signed pair",
    )
    operator.add_argument(
        "--webhook-client-ca",
        default="",
        help="CA file of the API server's client certificate: the webhook then answers only "
        "callers presenting a certificate it signed (the API server's admission kubeconfig); "
        "'' (default): no client check",
    )
    operator.add_argument(
        "--webhook-client-name",
        action="append",
        help="a common name the client certificate must carry (repeatable); default: any the "
        "CA signed",
    )
    operator.add_argument(
        "--logs-address",
        default="",
        help="host:port to serve the log API on (kubectl treadle logs and ui read task logs "
        "through the API server from there); '' (default): none",
    )
    operator.add_argument(
        "--logs-service",
        default="treadle-system/treadle-logs",
        help="namespace/name of the Service (port 443) the API server reaches the log API "
        "through (default: treadle-system/treadle-logs)",
    )
    operator.add_argument(
        "--logs-publish",
        action="store_true",
        help="make that Service here, pointing at --logs-address (an operator outside any "
        "pod, as with the local cluster; in a cluster the chart makes it)",
    )
    operator.add_argument(
        "--leader-election-namespace",
        default="",
        help="elect a leader among replicas through the Lease treadle-operator in this "
        "namespace; '' (default): no election, run one replica only",
    )
    operator.add_argument("--log-format", choices=("json", "text"), default="json")
    operator.add_argument("-v", "--verbose", action="store_true")
    operator.set_defaults(handler=_operator)

    worker = commands.add_parser("worker", help="run task workers of one pool (in worker pods)")
    worker.add_argument("--pool", required=True, help="the pool whose stream to serve")
    worker.add_argument(
        "--redis-url",
        default=os.environ.get("TREADLE_REDIS_URL"),
        help="default $TREADLE_REDIS_URL",
    )
    worker.add_argument(
        "--consumer",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="consumer name in the stream's group (default: host name and pid)",
    )
    worker.add_argument(
        "--name",
        default=os.environ.get(WORKER_NAME_ENV) or socket.gethostname(),
        help=f"the worker's name in status (default: ${WORKER_NAME_ENV}, its pod's, or host name)",
    )
    worker.add_argument("--concurrency", type=int, default=32, help="attempts run at once")
    worker.add_argument(
        "--reap-idle-seconds",
        type=float,
        default=25.0,
        help="re-deliver messages unacknowledged this long (their worker died)",
    )
    worker.add_argument(
        "--drain-seconds",
        type=float,
        default=25.0,
        help="on SIGTERM, take nothing new and let the attempts in hand finish this long",
    )
    worker.add_argument(
        "--metrics-address", default="", help="host:port of /metrics; '' (default) disables"
    )
    worker.add_argument("--log-format", choices=("json", "text"), default="json")
    worker.set_defaults(handler=_worker)

    secret = commands.add_parser(
        "ensure-secret",
        help="make a Secret with a random value unless it exists (the chart's Redis password)",
    )
    secret.add_argument("namespace")
    secret.add_argument("name")
    secret.add_argument("--key", default="password")
    secret.set_defaults(handler=_ensure_secret)

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.add_argument("-o", "--output", help="write one file per CRD into this directory")
    crds.set_defaults(handler=_crds)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_version)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
