"""Operator settings: where kopf keeps its state on our objects, and watch timeouts."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import kopf

from treadle.api import GROUP
from treadle.handlers.registry import registry

FINALIZER = f"{GROUP}/finalizer"
WATCH_SERVER_TIMEOUT_SECONDS = 300
WATCH_CLIENT_TIMEOUT_SECONDS = 330


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # Watch streams can go silent without an error: make both ends time out and reconnect.
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_SECONDS
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.INFO


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config."""
    credentials: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    if credentials is not None:
        # kopf names kubernetes.default.svc; like client-go, prefer the address the kubelet
        # gives every pod (no cluster DNS needed).
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if host:
            host = f"[{host}]" if ":" in host else host
            credentials = dataclasses.replace(credentials, server=f"https://{host}:{port}")
        return credentials
    return kopf.login_with_kubeconfig(**kwargs)
