"""A container's environment as a kubelet builds it: env and envFrom from ConfigMaps, Secrets
and field references, with Kubernetes' $(VAR) expansion."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import ConfigMap, Secret

from agentcommon import POD_IP, Json

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, unknown stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, text)


class ConfigError(Exception):
    """The container's configuration refers to something missing (CreateContainerConfigError)."""


@dataclass
class Lookups:
    client: AsyncClient
    namespace: str
    _cache: dict[tuple[str, str], Json] = field(default_factory=dict)

    async def _get(self, kind: str, name: str) -> Json | None:
        key = (kind, name)
        if key not in self._cache:
            resource = Secret if kind == "Secret" else ConfigMap
            try:
                obj = await self.client.get(resource, name, namespace=self.namespace)
            except ApiError as error:
                if error.status.code == 404:
                    return None
                raise
            self._cache[key] = obj.to_dict()
        return self._cache[key]

    async def value(self, kind: str, ref: Json) -> str | None:
        obj = await self._get(kind, ref["name"])
        optional = bool(ref.get("optional", False))
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        if kind == "Secret":
            import base64

            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data.update(obj.get("stringData") or {})
        else:
            data = dict(obj.get("data") or {})
        if ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(
                f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref['name']}"
            )
        return str(data[ref["key"]])

    async def all_of(self, kind: str, ref: Json) -> dict[str, str]:
        obj = await self._get(kind, ref["name"])
        if obj is None:
            if ref.get("optional"):
                return {}
            raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        if kind == "Secret":
            import base64

            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})


def field_value(pod: Json, path: str) -> str:
    meta = pod["metadata"]
    status = pod.get("status") or {}
    pod_ip, host_ip = status.get("podIP") or POD_IP, status.get("hostIP") or POD_IP
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
        "status.podIPs": pod_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef {path}")


async def container_env(
    pod: Json, container: Json, lookups: Lookups, base: dict[str, str]
) -> dict[str, str]:
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            values = await lookups.all_of("ConfigMap", source["configMapRef"])
        else:
            values = await lookups.all_of("Secret", source["secretRef"])
        env.update({prefix + k: v for k, v in values.items()})
    for var in container.get("env") or []:
        value: str | None
        if "valueFrom" not in var or var["valueFrom"] is None:
            value = expand(var.get("value") or "", env)
        else:
            source = var["valueFrom"]
            if source.get("secretKeyRef"):
                value = await lookups.value("Secret", source["secretKeyRef"])
            elif source.get("configMapKeyRef"):
                value = await lookups.value("ConfigMap", source["configMapKeyRef"])
            elif source.get("fieldRef"):
                value = field_value(pod, source["fieldRef"]["fieldPath"])
            elif source.get("resourceFieldRef"):
                value = "0"
            else:
                raise ConfigError(f"unsupported valueFrom for {var['name']}")
        if value is not None:
            env[var["name"]] = value
    return env
