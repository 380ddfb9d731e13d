"""What an aggregated API (Treadle's log API) trusts of the requests the Kubernetes API server
forwards: the API server authenticates the user, then calls with its front-proxy client
certificate and names the user in headers.  Those headers count only on a connection whose
certificate the front-proxy CA signed, with a subject the API server lists; anyone else is
nobody.  The settings come from the API server's own ConfigMap
(kube-system/extension-apiserver-authentication), as every aggregated API server reads them.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"


@dataclass(frozen=True)
class FrontProxy:
    ca_pem: str
    """The CA that signs the API server's front-proxy client certificate."""
    allowed_names: tuple[str, ...] = ()
    """Subjects (common names) a front proxy's certificate may have; empty: any it signed."""
    user_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def of(cls, data: Mapping[str, str]) -> FrontProxy | None:
        """From the ConfigMap's data; None when the API server forwards to no aggregated API
        (it was started without --requestheader-client-ca-file)."""
        ca = data.get("requestheader-client-ca-file")
        if not ca:
            return None

        def listed(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            try:
                values = json.loads(data.get(key) or "null")
            except ValueError:
                return default
            return tuple(str(v) for v in values) if isinstance(values, list) else default

        return cls(
            ca_pem=ca,
            allowed_names=listed("requestheader-allowed-names", ()),
            user_headers=listed("requestheader-username-headers", cls.user_headers),
            group_headers=listed("requestheader-group-headers", cls.group_headers),
            extra_prefixes=listed("requestheader-extra-headers-prefix", cls.extra_prefixes),
        )

    def refusal(self, peer_names: Iterable[str] | None) -> str | None:
        """Why a caller is no front proxy (None: it is one); `peer_names`: the common names of
        the certificate it presented, None when it presented none the CA signed."""
        if peer_names is None:
            return "no client certificate of the API server's front proxy"
        names = list(peer_names)
        if self.allowed_names and not set(names) & set(self.allowed_names):
            return f"client certificate {', '.join(names) or '(no name)'} is not a front proxy's"
        return None

    def user(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> User | None:
        """The user a front proxy's request names (None: none named)."""
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
        lowered = [(key.lower(), value) for key, value in pairs]
        names = [v for k, v in lowered if k in {h.lower() for h in self.user_headers}]
        if not names or not names[0]:
            return None
        groups = [v for k, v in lowered if k in {h.lower() for h in self.group_headers}]
        extra: dict[str, list[str]] = {}
        for key, value in lowered:
            for prefix in (p.lower() for p in self.extra_prefixes):
                if key.startswith(prefix) and len(key) > len(prefix):
                    extra.setdefault(urllib.parse.unquote(key[len(prefix) :]), []).append(value)
        return User(names[0], tuple(groups), extra)


@dataclass(frozen=True)
class User:
    """A user as the API server authenticated them."""

    name: str
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    def review_subject(self) -> dict[str, Any]:
        """As a SubjectAccessReview's spec names its subject (and an admission request's
        userInfo)."""
        return {"username": self.name, "groups": list(self.groups), "extra": self.extra}
