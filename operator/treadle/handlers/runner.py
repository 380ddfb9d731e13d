"""Runs the operator: kopf with the project's registry, JSON logs, metrics and a health probe."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import kopf
import prometheus_client

# Importing the handler modules registers them in the project's registry.
from treadle.handlers import settings, workflows  # noqa: F401
from treadle.handlers.registry import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty serves the whole cluster."""
    health_address: str = "127.0.0.1:8080"
    """host:port of the liveness/readiness endpoint (/healthz)."""
    metrics_address: str = "127.0.0.1:9090"
    """host:port of the Prometheus metrics endpoint; empty disables it."""
    log_format: str = "json"
    verbose: bool = False
    stop_flag: asyncio.Event | None = field(default=None, compare=False)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


async def run(options: OperatorOptions) -> None:
    kopf.configure(
        verbose=options.verbose,
        log_format=kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object" if options.log_format == "json" else None,
    )
    if options.metrics_address:
        host, port = _split(options.metrics_address)
        prometheus_client.start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
    await kopf.operator(
        registry=registry,
        standalone=True,
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
        liveness_endpoint=f"http://{options.health_address}/healthz",
        stop_flag=options.stop_flag,
    )
