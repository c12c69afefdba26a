"""The local networks are an explicit list: each range in, its neighbours out."""

from __future__ import annotations

import pytest

from labgate.agent.errors import InvalidOption
from labgate.agent.locality import default_networks, is_local, parse_networks

INSIDE = [
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.20",
    "127.0.0.1",
    "127.2.3.4",
    "169.254.10.10",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:192.168.1.5",
    "[fd00::5]",
]
OUTSIDE = [
    "8.8.8.8",
    "172.15.255.255",
    "172.32.0.1",
    "192.169.0.1",
    "11.0.0.1",
    "100.64.0.1",  # CGNAT: shared, not the device's own network (opt in with --local-networks)
    "::ffff:8.8.8.8",
    "2001:db8::1",
    "fec0::1",
    "0.0.0.0",
    "::",
    "255.255.255.255",
    "localhost",
    "",
    "10.0.0.1.evil",
    "not an address",
]


@pytest.mark.parametrize("address", INSIDE)
def test_default_networks_include_private_loopback_link_local_and_ula(address: str) -> None:
    assert is_local(address, default_networks())


@pytest.mark.parametrize("address", OUTSIDE)
def test_default_networks_exclude_public_cgnat_names_and_garbage(address: str) -> None:
    assert not is_local(address, default_networks())


def test_narrowed_networks_refuse_another_loopback_address() -> None:
    only = parse_networks(["127.0.0.1/32"])
    assert is_local("127.0.0.1", only)
    assert not is_local("127.0.0.2", only)
    assert not is_local("::ffff:127.0.0.2", only)


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "10.0.0.0/33", "ten", "10.0.0.0/8/1"])
def test_a_malformed_network_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(InvalidOption, match="--local-networks"):
        parse_networks([bad])


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(InvalidOption, match="at least one"):
        parse_networks(["", " "])
