"""Which webhook callers are answered (SPEC: only the API server's client certificate)."""

from __future__ import annotations

from treadle.core import admission

API_SERVER = "kube-apiserver-webhook-client"


def test_a_certificate_naming_an_allowed_subject_is_answered() -> None:
    assert admission.client_refusal([API_SERVER], [API_SERVER]) is None
    assert admission.client_refusal(["anyone"], []) is None  # no list: any the CA signed


def test_another_subject_of_the_same_ca_is_refused_with_both_names() -> None:
    refusal = admission.client_refusal(["treadle-admin"], [API_SERVER])
    assert refusal == (
        "client certificate for treadle-admin is not the API server's "
        "(kube-apiserver-webhook-client)"
    )
    assert "no common name" in str(admission.client_refusal([], [API_SERVER]))
