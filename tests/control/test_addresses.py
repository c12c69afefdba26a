"""The public address: the socket peer, and a forwarded header only from listed proxies."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

import httpx
import pytest

from labgate.control.addresses import local_address_problem, resolve

from .conftest import LiveServer

PROXY = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00:1::/64")]


def xff(peer: str, *values: str, trusted: Any = PROXY) -> str:
    return resolve(peer, list(values), trusted=trusted, header="x-forwarded-for")


def test_no_trusted_proxy_means_the_peer_whatever_the_header_says() -> None:
    assert xff("198.51.100.4", "203.0.113.7", trusted=[]) == "198.51.100.4"
    assert xff("198.51.100.4", "203.0.113.7") == "198.51.100.4"  # peer is not a proxy of ours


def test_behind_a_trusted_proxy_the_first_untrusted_hop_from_the_right() -> None:
    # The client wrote "203.0.113.7" itself; the proxy appended the real peer 198.51.100.4.
    assert xff("10.0.0.5", "203.0.113.7, 198.51.100.4") == "198.51.100.4"
    # Two trusted proxies in a row are skipped.
    assert xff("10.0.0.5", "203.0.113.7, 198.51.100.4, 10.0.0.9") == "198.51.100.4"
    # Several header lines read as one list, in order.
    assert xff("10.0.0.5", "203.0.113.7", "198.51.100.4") == "198.51.100.4"


def test_a_garbage_hop_stops_the_walk_at_the_proxy() -> None:
    assert xff("10.0.0.5", "203.0.113.7, not-an-address") == "10.0.0.5"
    assert xff("10.0.0.5") == "10.0.0.5"


def test_forwarded_rfc7239_is_read_only_when_named() -> None:
    header = 'for=203.0.113.7, for="[2001:db8::1]:4711";proto=https'
    assert resolve("10.0.0.5", [header], trusted=PROXY, header="forwarded") == "2001:db8::1"
    assert resolve("10.0.0.5", ["for=198.51.100.4:80"], trusted=PROXY, header="forwarded") == (
        "198.51.100.4"
    )


def test_ipv4_mapped_peers_are_unwrapped() -> None:
    assert xff("::ffff:10.0.0.5", "198.51.100.4") == "198.51.100.4"
    assert xff("::ffff:198.51.100.4", trusted=[]) == "198.51.100.4"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("10.1.2.3:46001", True),
        ("172.16.0.1:1", True),
        ("172.32.0.1:80", False),
        ("192.168.0.1:65535", True),
        ("127.0.0.1:46001", True),
        ("169.254.1.1:80", True),
        ("[::1]:46001", True),
        ("[fe80::1]:80", True),
        ("[fd12::1]:80", True),
        ("[2001:db8::1]:80", False),
        ("100.64.0.1:80", False),
        ("203.0.113.1:80", False),
        ("printer.local:80", False),
        ("10.0.0.1:0", False),
        ("10.0.0.1:70000", False),
        ("::1:80", False),
    ],
)
def test_local_addresses_are_an_explicit_list(value: str, ok: bool) -> None:
    assert (local_address_problem(value) is None) is ok


@pytest.mark.slow
def test_real_sockets_from_other_loopback_addresses_and_forged_headers(
    live_server: LiveServer,
) -> None:
    """Over real TLS: the device at 127.0.0.2, the person at 127.0.0.2 sees it; a person at
    127.0.0.3 does not, however it dresses its headers."""
    import ssl

    context = ssl.create_default_context(cafile=live_server.root)

    def from_(source: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source, verify=context)
        return httpx.Client(base_url=live_server.url, transport=transport)

    with live_server.api() as api:
        person = api.create_user(api.admin(), "olga", "operator")
    instance = secrets.token_urlsafe(16)
    with from_("127.0.0.2") as home, from_("127.0.0.3") as away:
        announced = home.post(
            "/api/v1/discovery/announce",
            json={
                "instance_id": instance,
                "local_address": "127.0.0.2:46001",
                "hostname": "bench-3",
                "model": "QS5",
                "serial": "1",
            },
        )
        assert announced.status_code == 201 and announced.json()["public_address"] == "127.0.0.2"
        seen = home.get("/api/v1/discovery", headers=person).json()
        assert [d["instance_id"] for d in seen["devices"]] == [instance]
        for forged in ({"X-Forwarded-For": "127.0.0.2"}, {"Forwarded": "for=127.0.0.2"}, {}):
            listing = away.get("/api/v1/discovery", headers={**person, **forged}).json()
            assert listing["public_address"] == "127.0.0.3" and listing["devices"] == []
