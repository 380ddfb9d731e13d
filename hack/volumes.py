"""Pod volumes for the local node agent.

emptyDir, configMap, secret, downwardAPI and projected volumes (the service-account token the
API server's ServiceAccount admission adds to every pod included) are written under the pod's
directory when the pod starts; each container then sees them at their `mountPath`, bind-mounted
in a mount namespace of its own, so `/var/run/secrets/kubernetes.io/serviceaccount/token` is
the pod's own token and in-cluster clients work as in any cluster.

Bind mounts need root (this agent's machine runs as root); without it the agent runs
containers without their mounts and says so once.  Mount points that do not exist on the
machine are created as empty directories.  Tokens are requested for an hour and not renewed.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccount

log = logging.getLogger("nodeagent.volumes")

Json = dict[str, Any]
TOKEN_SECONDS = 3600
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE, MS_RDONLY, MS_REMOUNT = 4096, 16384, 1 << 18, 1, 32


class VolumeError(Exception):
    """A volume that cannot be set up (a missing ConfigMap, Secret or key)."""


def mounts_possible() -> bool:
    """True when this process may make mount namespaces (root, and the kernel lets it)."""
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def _write(directory: Path, files: dict[str, bytes], mode: int = 0o644) -> None:
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def _pick(data: dict[str, bytes], items: list[Json] | None, what: str) -> dict[str, bytes]:
    """The files of a configMap or secret volume: every key, or the listed items."""
    if not items:
        return dict(data)
    picked = {}
    for item in items:
        if item["key"] not in data:
            raise VolumeError(f"couldn't find key {item['key']} in {what}")
        picked[item["path"]] = data[item["key"]]
    return picked


async def _object_data(lookups: Any, kind: str, source: Json) -> dict[str, bytes] | None:
    name = source.get("name") or source.get("secretName")
    obj = await lookups._get(kind, name)
    if obj is None:
        if source.get("optional"):
            return None
        raise VolumeError(f'{kind.lower()} "{name}" not found')
    if kind == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    return {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}


def _downward(
    pod: Json, items: list[Json], field_value: Callable[[Json, str], str]
) -> dict[str, bytes]:
    return {
        item["path"]: field_value(pod, item["fieldRef"]["fieldPath"]).encode()
        for item in items
        if "fieldRef" in item
    }


async def _token(client: AsyncClient, pod: Json, source: Json) -> bytes:
    meta, spec = pod["metadata"], pod["spec"]
    request = ServiceAccount.Token(
        metadata=ObjectMeta(),
        spec=TokenRequestSpec(
            audiences=[source["audience"]] if source.get("audience") else [],
            expirationSeconds=max(int(source.get("expirationSeconds") or 0), TOKEN_SECONDS),
            boundObjectRef=BoundObjectReference(
                apiVersion="v1", kind="Pod", name=meta["name"], uid=meta["uid"]
            ),
        ),
    )
    account = spec.get("serviceAccountName") or "default"
    answer = await client.create(request, name=account, namespace=meta["namespace"])
    assert answer.status is not None
    return answer.status.token.encode()


async def prepare(
    client: AsyncClient,
    pod: Json,
    lookups: Any,
    pod_dir: Path,
    field_value: Callable[[Json, str], str],
) -> dict[str, Path]:
    """Writes every volume of the pod; returns each volume's directory by name."""
    prepared: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        directory = pod_dir / "volumes" / volume["name"]
        directory.mkdir(parents=True, exist_ok=True)
        prepared[volume["name"]] = directory
        # A projected volume is several sources in one directory; the others are one source.
        # emptyDir (and anything else) is the empty directory itself.
        sources = (volume.get("projected") or {}).get("sources") or [volume]
        for source in sources:
            await _write_source(client, pod, lookups, directory, source, field_value)
    return prepared


async def _write_source(
    client: AsyncClient,
    pod: Json,
    lookups: Any,
    directory: Path,
    source: Json,
    field_value: Callable[[Json, str], str],
) -> None:
    if "serviceAccountToken" in source:
        token_source = source["serviceAccountToken"]
        token = await _token(client, pod, token_source)
        _write(directory, {token_source["path"]: token}, 0o600)
    elif "configMap" in source or "secret" in source:
        kind = "ConfigMap" if "configMap" in source else "Secret"
        inner = source.get("configMap") or source["secret"]
        data = await _object_data(lookups, kind, inner)
        if data is not None:
            _write(directory, _pick(data, inner.get("items"), f"{kind} {inner}"))
    elif "downwardAPI" in source:
        _write(directory, _downward(pod, source["downwardAPI"].get("items") or [], field_value))


def mounts_for(container: Json, volumes: dict[str, Path]) -> list[tuple[str, str, bool]]:
    """(source, mountPath, read-only) for each of the container's volumeMounts."""
    found = []
    for mount in container.get("volumeMounts") or []:
        source = volumes.get(mount["name"])
        if source is None:
            raise VolumeError(f"volume {mount['name']!r} is not defined in the pod")
        if mount.get("subPath"):
            source = source / mount["subPath"]
            if not source.exists():  # as the kubelet does (Argo's wait mounts /tmp so)
                source.mkdir(parents=True)
        found.append((str(source), mount["mountPath"], bool(mount.get("readOnly"))))
    return found


def program(name: str, search_path: str | None, mounts: list[tuple[str, str, bool]]) -> str | None:
    """The file a container's program runs from, as the agent sees it (None: there is none).

    A path under one of the container's mounts is looked up in that volume: Argo's emissary
    executor runs /var/run/argo/argoexec, which its init container copied into an emptyDir,
    and the agent checks for it before the process enters its mount namespace.  Any other name
    is looked up on the machine, along the container's PATH."""
    if name.startswith("/"):
        name = os.path.normpath(name)  # no way out of a volume by "..": it is the pod's path
    for source, target, _ in sorted(mounts, key=lambda m: len(m[1]), reverse=True):
        root = target.rstrip("/") + "/"
        if name.startswith(root):
            found = Path(source) / name[len(root) :]
            return str(found) if found.is_file() and os.access(found, os.X_OK) else None
    return shutil.which(name, path=search_path)


def entering(
    mounts: list[tuple[str, str, bool]], keep: list[str] | tuple[str, ...] = ()
) -> Callable[[], None]:
    """A preexec function: a private mount namespace with the container's mounts in place.

    There is no image here: the container runs the machine's programs.  So the paths in `keep`
    (the checkout, its virtual environment, the agent's state) stay visible even under a mount
    that covers them (an emptyDir at /tmp over a checkout in /tmp): they are bound back inside
    it."""
    for source, target, _ in mounts:
        if Path(source).is_dir():
            Path(target).mkdir(parents=True, exist_ok=True)
        else:  # a subPath file: mounted over a file
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).touch(exist_ok=True)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")

    # Parents before children, so that /var/run/x mounts on top of a mount at /var.
    ordered = sorted(mounts, key=lambda mount: len(Path(mount[1]).parts))
    targets = [Path(target) for _, target, _ in ordered]
    covered = sorted(
        {path for path in keep if any(Path(path).is_relative_to(t) for t in targets)},
        key=lambda path: len(Path(path).parts),
    )

    def bind(handle: int, target: str) -> None:
        source = f"/proc/self/fd/{handle}".encode()
        check(libc.mount(source, target.encode(), None, MS_BIND | MS_REC, None), target)

    def enter() -> None:
        check(libc.unshare(CLONE_NEWNS), "unshare")
        check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate")
        # Hold every source open first (in this namespace): a mount at /tmp would hide the
        # sources that live under it.
        handles = [os.open(source, os.O_RDONLY) for source, _, _ in ordered]
        kept = [os.open(path, os.O_RDONLY) for path in covered]
        for handle, (_, target, read_only) in zip(handles, ordered, strict=True):
            bind(handle, target)
            if read_only:
                flags = MS_BIND | MS_REMOUNT | MS_RDONLY
                check(libc.mount(None, target.encode(), None, flags, None), target)
        for handle, path in zip(kept, covered, strict=True):
            os.makedirs(path, exist_ok=True)
            bind(handle, path)
        for handle in handles + kept:
            os.close(handle)

    return enter
