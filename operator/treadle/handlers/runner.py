"""Runs the operator: kopf with the project's registry, JSON logs, metrics and a health probe."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import kopf
import prometheus_client

# Importing the handler modules registers them in the project's registry.
from treadle.handlers import settings, validation, workflows  # noqa: F401
from treadle.handlers.registry import registry
from treadle.services import certificates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty serves the whole cluster."""
    health_address: str = "127.0.0.1:8080"
    """host:port of the liveness/readiness endpoint (/healthz)."""
    metrics_address: str = "127.0.0.1:9090"
    """host:port of the Prometheus metrics endpoint; empty disables it."""
    webhook_address: str = ""
    """host:port of the admission webhook the operator serves and registers; empty: none."""
    log_format: str = "json"
    verbose: bool = False
    stop_flag: asyncio.Event | None = field(default=None, compare=False)


def _webhook_server(address: str) -> kopf.WebhookServer:
    """A TLS webhook server on `address` with a fresh self-signed CA for its certificate."""
    host, port = _split(address)
    ca, cert, key = certificates.serving_pair("treadle-webhook", (host, "localhost"))
    directory = Path(tempfile.mkdtemp(prefix="treadle-webhook-"))
    for name, pem in (("ca.crt", ca), ("tls.crt", cert), ("tls.key", key)):
        (directory / name).write_bytes(pem)
    return kopf.WebhookServer(
        addr=host,
        port=port,
        host=host,
        cafile=str(directory / "ca.crt"),
        certfile=str(directory / "tls.crt"),
        pkeyfile=str(directory / "tls.key"),
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
    if options.metrics_address:
        host, port = _split(options.metrics_address)
        prometheus_client.start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
    operator_settings = kopf.OperatorSettings()
    if options.webhook_address:
        validation.register(registry)
        operator_settings.admission.server = _webhook_server(options.webhook_address)
        operator_settings.admission.managed = validation.WEBHOOK_CONFIGURATION
    await kopf.operator(
        registry=registry,
        settings=operator_settings,
        standalone=True,
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
        liveness_endpoint=f"http://{options.health_address}/healthz",
        stop_flag=options.stop_flag,
    )
