"""Operator settings: where kopf keeps its state on our objects, and watch timeouts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from typing import Any, cast

import kopf

from treadle.api import GROUP
from treadle.handlers.registry import registry

FINALIZER = f"{GROUP}/finalizer"
WATCH_SERVER_TIMEOUT_SECONDS = 300
WATCH_CLIENT_TIMEOUT_SECONDS = 330


class LeanDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base (what `on.update` compares), built from the object without its status
    and managedFields, and holding a digest of the spec and the labels rather than the spec and
    the annotations themselves.  kopf deep-copies the whole object on every watch event and
    only then drops them (a 10,000-child workflow's status and managedFields are most of its
    480 KB, and that copy was 4 % of the operator's time in a profile); and the copy it stores
    is an annotation, which cannot pass 256 KiB with the others: a spec over that (or half of
    it, beside kubectl's last-applied copy) could never be recorded as handled, and its
    handlers ran again for the object's whole life.  Every `on.update` of ours watches `spec`
    alone and reads the object itself, never kopf's old and new."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if extra_fields:  # a handler reads fields of status: kopf's own way keeps them
            return super().build(body=body, extra_fields=extra_fields)
        spec = json.dumps(body.get("spec"), sort_keys=True, separators=(",", ":"))
        lean = {
            "spec": {"sha256": hashlib.sha256(spec.encode()).hexdigest()},
            "metadata": {"labels": dict(body.metadata.labels)},
        }
        return super().build(body=kopf.Body(cast(kopf.RawBody, lean)))


@kopf.on.startup(registry=registry)
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = LeanDiffBase(
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
