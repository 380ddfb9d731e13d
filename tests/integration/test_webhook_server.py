"""The webhook server registers itself as reached through a Service when told one."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

from cryptography import x509

from support.redis_server import free_port
from treadle.handlers import runner
from treadle.services import certificates


async def handler(*_: object, **__: object) -> None:
    return None


async def test_a_webhook_behind_a_service_is_registered_by_service_with_its_ca() -> None:
    server = runner._webhook_server(
        f"127.0.0.1:{free_port()}", "treadle-system/treadle-webhook:443"
    )
    configs = server(handler)  # type: ignore[arg-type]
    config = await anext(configs)
    await configs.aclose()
    assert config["service"] == {
        "namespace": "treadle-system",
        "name": "treadle-webhook",
        "port": 443,
        "path": "",
    }
    assert "url" not in config
    ca = x509.load_pem_x509_certificate(base64.b64decode(config["caBundle"]))
    assert ca.subject.rfc4514_string() == "CN=treadle-webhook-ca"
    pem = await asyncio.to_thread(Path(str(server.certfile)).read_bytes)
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "treadle-webhook.treadle-system.svc" in names.get_values_for_type(x509.DNSName)


async def test_a_webhook_with_a_given_certificate_serves_it_and_registers_its_ca(
    tmp_path: Path,
) -> None:
    ca, cert, key = certificates.serving_pair("corp", ("treadle-webhook.ns.svc",))
    for name, pem in (("ca.crt", ca), ("tls.crt", cert), ("tls.key", key)):
        await asyncio.to_thread((tmp_path / name).write_bytes, pem)
    server = runner._webhook_server(
        f"127.0.0.1:{free_port()}", "ns/treadle-webhook:443", str(tmp_path)
    )
    configs = server(handler)  # type: ignore[arg-type]
    config = await anext(configs)
    await configs.aclose()
    assert base64.b64decode(config["caBundle"]) == ca
    assert server.certfile == str(tmp_path / "tls.crt")


async def test_a_review_bigger_than_aiohttps_default_limit_is_read_and_answered() -> None:
    """An AdmissionReview over 1 MiB (a padded manifest, or an UPDATE of a big one, which
    carries the object twice) got 413 from aiohttp's default limit, and the API server then
    stored the object unchecked."""
    import httpx2 as httpx

    seen: list[int] = []

    async def answer(data: dict[str, object], **_: object) -> dict[str, object]:
        seen.append(len(str(data)))
        return {"response": {"uid": "u", "allowed": False}}

    port = free_port()
    server = runner._webhook_server(f"127.0.0.1:{port}")
    configs = server(answer)  # type: ignore[arg-type]
    await anext(configs)
    try:
        padded = {"request": {"uid": "u", "object": {"spec": {"params": {"pad": "x" * 5_000_000}}}}}
        trust = ssl.create_default_context(cafile=str(server.cafile))
        async with httpx.AsyncClient(verify=trust) as client:
            response = await client.post(f"https://127.0.0.1:{port}/validate", json=padded)
    finally:
        await configs.aclose()
    assert response.status_code == 200, response.text
    assert response.json()["response"]["allowed"] is False
    assert seen
    assert seen[0] > 5_000_000
