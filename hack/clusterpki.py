"""The local cluster's certificates (one CA; serving and client certificates for each
component, the webhook client the API server presents, the admin), the API server's admission
configuration, and the kubeconfig written for users."""

from __future__ import annotations

import base64
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from treadle.services import certificates

SERVICE_FIRST_IP = "10.0.0.1"
NODE_NAME = "treadle-local"
WEBHOOK_CLIENT = "kube-apiserver-webhook-client"
FRONT_PROXY_CLIENT = "front-proxy-client"
"""What the API server presents to aggregated APIs (Treadle's log API) when it forwards a user's
request; signed by a CA of its own, so no user certificate can pass for it."""


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Pki:
    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    def _write_key(self, name: str, key: certificates.Key) -> None:
        self.path(name).write_bytes(certificates.key_pem(key))
        self.path(name).chmod(0o600)

    def ensure(self, addresses: tuple[str, ...] = ()) -> None:
        """Generates the CA, the serving, client and service-account keys once; a serving
        certificate is issued again when it lacks one of `addresses` (the cluster's network
        came after its certificates)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.path("ca.crt").exists():
            log("generating the cluster CA and certificates")
            ca_key = certificates.new_key()
            ca_cert = certificates.issue(certificates.name("treadle-local-ca"), ca_key, None)
            self._write_key("ca.key", ca_key)
            self.path("ca.crt").write_bytes(certificates.cert_pem(ca_cert))
        ca = certificates.Issuer(
            x509.load_pem_x509_certificate(self.path("ca.crt").read_bytes()),
            certificates.load_key(self.path("ca.key").read_bytes()),
        )
        issued = {
            "apiserver": dict(
                subject=certificates.name("kube-apiserver"),
                server_names=(
                    "localhost",
                    "127.0.0.1",
                    SERVICE_FIRST_IP,
                    *addresses,
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ),
            ),
            "admin": dict(
                subject=certificates.name("treadle-admin", "system:masters"), client=True
            ),
            "apiserver-kubelet-client": dict(
                subject=certificates.name("kube-apiserver-kubelet-client", "system:masters"),
                client=True,
            ),
            "kubelet": dict(
                subject=certificates.name(f"system:node:{NODE_NAME}"),
                server_names=("127.0.0.1", *addresses),
            ),
            # What the API server presents to admission webhooks (the operator's answers only
            # this certificate: --webhook-client-name).
            WEBHOOK_CLIENT: dict(subject=certificates.name(WEBHOOK_CLIENT), client=True),
        }
        self._ensure_front_proxy()
        for name, options in issued.items():
            if self.path(f"{name}.crt").exists() and self._names_cover(
                name,
                tuple(options.get("server_names", ())),  # type: ignore[arg-type]
            ):
                continue
            key = certificates.new_key()
            cert = certificates.issue(
                options["subject"],  # type: ignore[arg-type]
                key,
                ca,
                server_names=options.get("server_names", ()),  # type: ignore[arg-type]
                client=bool(options.get("client", False)),
            )
            self._write_key(f"{name}.key", key)
            self.path(f"{name}.crt").write_bytes(certificates.cert_pem(cert))
        if not self.path("sa.key").exists():
            key = certificates.new_key()
            self._write_key("sa.key", key)
            self.path("sa.pub").write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )

    def _ensure_front_proxy(self) -> None:
        if self.path("front-proxy-client.crt").exists():
            return
        ca_key = certificates.new_key()
        ca_cert = certificates.issue(certificates.name("treadle-front-proxy-ca"), ca_key, None)
        self._write_key("front-proxy-ca.key", ca_key)
        self.path("front-proxy-ca.crt").write_bytes(certificates.cert_pem(ca_cert))
        key = certificates.new_key()
        issuer = certificates.Issuer(ca_cert, ca_key)
        cert = certificates.issue(certificates.name(FRONT_PROXY_CLIENT), key, issuer, client=True)
        self._write_key("front-proxy-client.key", key)
        self.path("front-proxy-client.crt").write_bytes(certificates.cert_pem(cert))

    def _names_cover(self, name: str, wanted: tuple[str, ...]) -> bool:
        cert = x509.load_pem_x509_certificate(self.path(f"{name}.crt").read_bytes())
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return not wanted
        have = {str(v) for v in names.get_values_for_type(x509.IPAddress)}
        have |= set(names.get_values_for_type(x509.DNSName))
        return set(wanted) <= have

    def write_admission_config(self) -> Path:
        """The API server's admission configuration: every webhook call presents the
        WEBHOOK_CLIENT certificate (a kubeconfig whose user `*` matches any webhook)."""
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "users": [
                {
                    "name": "*",
                    "user": {
                        "client-certificate": str(self.path(f"{WEBHOOK_CLIENT}.crt")),
                        "client-key": str(self.path(f"{WEBHOOK_CLIENT}.key")),
                    },
                }
            ],
        }
        self.path("webhook-client.kubeconfig").write_text(json.dumps(kubeconfig, indent=2))
        plugin = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(self.path("webhook-client.kubeconfig")),
        }
        config = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [
                {"name": name, "configuration": plugin}
                for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
            ],
        }
        self.path("admission.json").write_text(json.dumps(config, indent=2))
        return self.path("admission.json")


# --- ports and processes ------------------------------------------------------------------


def write_kubeconfig(state: Path, pki: Pki, apiserver_port: int, host: str = "127.0.0.1") -> Path:
    def b64(name: str) -> str:
        return base64.b64encode(pki.path(name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "treadle-local",
                "cluster": {
                    "server": f"https://{host}:{apiserver_port}",
                    "certificate-authority-data": b64("ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": "treadle-admin",
                "user": {
                    "client-certificate-data": b64("admin.crt"),
                    "client-key-data": b64("admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "treadle-local",
                "context": {"cluster": "treadle-local", "user": "treadle-admin"},
            }
        ],
        "current-context": "treadle-local",
    }
    path = state / "kubeconfig"
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path
