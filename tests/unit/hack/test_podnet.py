"""The local pod network's pure parts: each cluster's addresses, names and a pod's DNS files."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

import podnet


def test_each_slot_has_its_own_addresses_and_names_within_linux_limits() -> None:
    one, two = podnet.Network(1), podnet.Network(254)
    for net in (one, two):
        assert ipaddress.ip_address(net.gateway) in ipaddress.ip_network(net.pod_cidr)
        assert len(net.host_link) <= 15
        assert len(net.pod_netns("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")) <= 32
    assert not ipaddress.ip_network(one.pod_cidr).overlaps(ipaddress.ip_network(two.pod_cidr))
    assert {one.host_ip, one.node_ip} & {two.host_ip, two.node_ip} == set()
    service = ipaddress.ip_network(podnet.SERVICE_CIDR)
    assert ipaddress.ip_address(podnet.DNS_SERVICE_IP) in service
    assert not service.overlaps(ipaddress.ip_network(one.pod_cidr))


def test_a_pods_resolv_conf_searches_its_namespace_first_like_a_kubelets() -> None:
    assert podnet.resolv_conf("team-a").splitlines() == [
        "search team-a.svc.cluster.local svc.cluster.local cluster.local",
        "nameserver 10.0.0.10",
        "options ndots:5",
    ]


@pytest.mark.parametrize(
    ("spec", "host_network", "expected"),
    [
        ({}, False, "nameserver 10.0.0.10"),
        ({}, True, None),  # ClusterFirst on the host network falls back to the machine's
        ({"dnsPolicy": "ClusterFirstWithHostNet"}, True, "nameserver 10.0.0.10"),
        ({"dnsPolicy": "Default"}, False, None),
        (
            {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.53"]}},
            False,
            "nameserver 192.0.2.53",
        ),
    ],
)
def test_dns_policy_picks_the_resolv_conf(
    spec: dict[str, Any], host_network: bool, expected: str | None
) -> None:
    resolv = podnet.pod_resolv_conf(spec, "team-a", host_network=host_network)
    if expected is None:
        assert resolv is None
    else:
        assert resolv is not None
        assert expected in resolv.splitlines()


def test_dns_config_adds_searches_and_options() -> None:
    spec = {
        "dnsConfig": {"searches": ["corp.example"], "options": [{"name": "ndots", "value": "2"}]}
    }
    resolv = podnet.pod_resolv_conf(spec, "team-a", host_network=False)
    assert resolv is not None
    lines = resolv.splitlines()
    assert "search corp.example" in lines
    assert "options ndots:2" in lines


class FakeIp:
    """`ip` as the address book sees it: every command succeeds, and is remembered."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, check: bool = True) -> Any:
        self.calls.append(args)
        return type("Done", (), {"returncode": 0})()


def test_a_full_pod_range_takes_back_the_addresses_of_pods_no_longer_running(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeIp()
    monkeypatch.setattr(podnet, "ip", fake)
    monkeypatch.setattr(podnet, "NETNS_DIR", tmp_path / "netns")
    running = {f"live-{i}" for i in range(3)}
    networks = podnet.PodNetworks(podnet.Network(7), tmp_path / "ipam", running.__contains__)
    for i in range(253):  # every address of the /24 but the gateway's
        owner = f"live-{i}" if i < 3 else f"gone-{i}"
        networks._claim(owner)
    address = networks.attach("new-pod").ip
    assert address not in {networks._claim(uid) for uid in running}  # theirs are kept
    owners = {owner for _, owner in networks._claims()}
    assert owners == running | {"new-pod"}  # the 250 leaked ones were taken back
    assert ("netns", "del", networks.net.pod_netns("gone-3")) in fake.calls
    everyone = podnet.PodNetworks(podnet.Network(7), tmp_path / "full", lambda uid: True)
    for i in range(253):
        everyone._claim(f"live-{i}")
    with pytest.raises(RuntimeError, match=r"no free address in 10\.244\.7\.0/24"):
        everyone._claim("one-too-many")


def test_an_address_file_that_goes_while_the_book_is_read_is_no_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(podnet, "ip", FakeIp())
    networks = podnet.PodNetworks(podnet.Network(7), tmp_path / "ipam")
    mine, theirs = networks._claim("mine"), networks._claim("theirs")
    read = type(tmp_path).read_text

    def vanishing(path: Any, *args: Any, **kwargs: Any) -> str:
        if path.name == theirs:  # another pod's teardown removed it meanwhile
            path.unlink()
            raise FileNotFoundError(path)
        return str(read(path, *args, **kwargs))

    monkeypatch.setattr(type(tmp_path), "read_text", vanishing)
    networks.detach("mine")
    assert not (tmp_path / "ipam" / mine).exists()
