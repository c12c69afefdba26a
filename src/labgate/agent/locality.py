"""Which addresses are "the local network": an explicit allow-list, never `is_private`.

Python's `is_private` tables have changed between releases (and classify 100.64/10 and
IPv4-mapped addresses in ways a locality check must not depend on), so the networks are named
here and tested one by one. An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`) is judged as the
IPv4 address it carries; an IPv6 zone (`fe80::1%eth0`) is dropped before parsing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from labgate.agent.errors import InvalidOption

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 1918, loopback, link-local (v4 and v6), IPv6 unique local (RFC 4193).
DEFAULT_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
)


def parse_networks(
    items: Iterable[str], *, option: str = "--local-networks"
) -> tuple[Network, ...]:
    """Each CIDR as a network; host bits set or anything unparsable is refused, naming it."""
    networks: list[Network] = []
    for raw in items:
        text = raw.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as error:
            raise InvalidOption(
                f"{option}: {text!r} is not a network in CIDR form ({error})"
            ) from None
    if not networks:
        raise InvalidOption(f"{option}: at least one network is needed")
    return tuple(networks)


def default_networks() -> tuple[Network, ...]:
    return parse_networks(DEFAULT_NETWORKS)


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP literal (zone dropped, IPv4-mapped unwrapped), or None when `text` is not one."""
    bare = text.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_local(text: str, networks: Iterable[Network]) -> bool:
    """Whether the address `text` lies in one of `networks`; a name or garbage never does."""
    address = parse_address(text)
    if address is None:
        return False
    return any(address.version == network.version and address in network for network in networks)
