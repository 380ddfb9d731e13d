"""An aggregated API believes the user headers only of the API server's front proxy."""

from __future__ import annotations

import json

from treadle.core.delegation import FrontProxy

DATA = {
    "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
    "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
    "requestheader-username-headers": json.dumps(["X-Remote-User"]),
    "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
    "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
}


def test_the_settings_are_the_api_servers_own() -> None:
    proxy = FrontProxy.of(DATA)
    assert proxy is not None
    assert proxy.allowed_names == ("front-proxy-client",)
    assert proxy.user_headers == ("X-Remote-User",)


def test_an_api_server_without_a_front_proxy_ca_forwards_to_no_aggregated_api() -> None:
    assert FrontProxy.of({"client-ca-file": "..."}) is None


def test_only_the_front_proxys_certificate_is_believed() -> None:
    proxy = FrontProxy.of(DATA)
    assert proxy is not None
    assert proxy.refusal(["front-proxy-client"]) is None
    assert "no client certificate" in (proxy.refusal(None) or "")
    assert "treadle-admin is not a front proxy's" in (proxy.refusal(["treadle-admin"]) or "")


def test_any_name_the_ca_signed_passes_when_the_api_server_lists_none() -> None:
    proxy = FrontProxy.of({**DATA, "requestheader-allowed-names": "[]"})
    assert proxy is not None
    assert proxy.refusal(["anything"]) is None


def test_the_user_groups_and_extras_come_from_the_headers() -> None:
    proxy = FrontProxy.of(DATA)
    assert proxy is not None
    user = proxy.user(
        [
            ("X-Remote-User", "alice"),
            ("x-remote-group", "devs"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes%2Fread", "a"),
            ("Accept", "application/json"),
        ]
    )
    assert user is not None
    assert user.review_subject() == {
        "username": "alice",
        "groups": ["devs", "system:authenticated"],
        "extra": {"scopes/read": ["a"]},
    }
    assert proxy.user([("X-Remote-Group", "devs")]) is None
