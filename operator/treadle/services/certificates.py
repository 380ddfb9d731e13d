"""X.509 certificates for the local cluster and the admission webhook (ECDSA P-256)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> Key:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an EC private key")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


@dataclass(frozen=True)
class Issuer:
    cert: x509.Certificate
    key: Key


def issue(
    subject: x509.Name,
    key: Key,
    issuer: Issuer | None,
    *,
    server_names: tuple[str, ...] = (),
    client: bool = False,
    days: int = 825,
) -> x509.Certificate:
    """A CA certificate (issuer None) or a leaf for a server (server_names) or a client."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650 if issuer is None else days))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server_names:
        alt: list[x509.GeneralName] = []
        for server_name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(server_name)))
            except ValueError:
                alt.append(x509.DNSName(server_name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def serving_pair(common_name: str, server_names: tuple[str, ...]) -> tuple[bytes, bytes, bytes]:
    """A fresh CA and a serving certificate it signed: (ca pem, cert pem, key pem)."""
    ca_key = new_key()
    ca = issue(name(f"{common_name}-ca"), ca_key, None)
    key = new_key()
    cert = issue(name(common_name), key, Issuer(ca, ca_key), server_names=server_names)
    return cert_pem(ca), cert_pem(cert), key_pem(key)
