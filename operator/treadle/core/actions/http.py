"""`http`: call an endpoint; the output is the JSON body, or the text when it is not JSON.

Its breaker and rate-limit target is the endpoint (scheme://host:port), shared by every task
that calls it; header values may come from Secrets, which reach the worker as env, never
through Redis."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from treadle.api.workflows import HttpAction
from treadle.core import templating
from treadle.core.actions._base import ActionKind, render_strings, strings_in


class Http(ActionKind):
    name = "http"
    runner = "treadle.worker.runners:run_http"

    def templates(self, spec: HttpAction, path: str) -> Iterator[tuple[str, str]]:
        yield f"{path}.url", spec.url
        for number, header in enumerate(spec.headers):
            if header.value is not None:
                yield f"{path}.headers[{number}].value", header.value
        yield from strings_in(spec.body, f"{path}.body")

    def render(self, spec: HttpAction, context: Mapping[str, Any]) -> dict[str, Any]:
        rendered = spec.model_dump(by_alias=True, exclude_none=True)
        rendered["url"] = templating.render_text(spec.url, context)
        rendered["headers"] = [
            {**header, "value": templating.render_text(header["value"], context)}
            if "value" in header
            else header
            for header in rendered.get("headers", [])
        ]
        if spec.body is not None:
            rendered["body"] = render_strings(
                spec.body, lambda text: templating.render_text(text, context)
            )
        return rendered

    def target(self, rendered: Mapping[str, Any], task: str) -> str:
        url = rendered.get("url")
        if not isinstance(url, str):
            return super().target(rendered, task)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{parts.hostname}:{port}"

    def secret_keys(self, spec: HttpAction) -> Iterator[tuple[str, str]]:
        for header in spec.headers:
            if header.value_from is not None:
                ref = header.value_from.secret_key_ref
                yield ref.name, ref.key

    def secrets_named(self, raw: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
        headers = raw.get("headers")
        for number, header in enumerate(headers if isinstance(headers, list) else []):
            source = header.get("valueFrom") if isinstance(header, Mapping) else None
            ref = source.get("secretKeyRef") if isinstance(source, Mapping) else None
            name = ref.get("name") if isinstance(ref, Mapping) else None
            if isinstance(name, str) and name:
                yield name, f"{path}.headers[{number}].valueFrom"


KIND = Http()
