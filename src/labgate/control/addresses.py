"""Where a request comes from: the public address discovery and code limits are keyed on.

The address is the socket peer's. A forwarded header (`X-Forwarded-For` or RFC 7239
`Forwarded`, whichever `forwarded_header` names; never both, since a proxy that appends to one
passes the other through as the client wrote it) is read only when the peer is one of the
`trusted_proxies`; then the hops are walked from the right, skipping trusted ones, and the first
untrusted hop is the answer. A hop that does not parse as an address ends the walk at the last
trusted hop: a header no proxy of ours wrote is worth nothing.

Also the check on the local address an agent announces: an IP literal in the private,
loopback, link-local or unique-local ranges, so a listing can only send a browser to a LAN page.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.requests import Request

from labgate.control.settings import ControlSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What an agent may announce as its local page: RFC 1918, loopback, link-local, IPv6 ULA.
# An explicit list rather than `is_private`, whose tables changed between Python releases and
# which counts documentation and reserved ranges too.
LOCAL_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
    )
)


def parse_address(text: str) -> IPAddress | None:
    """An IP address (an IPv4-mapped IPv6 one unwrapped), or None."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def public_address(request: Request, settings: ControlSettings) -> str:
    peer = request.client.host if request.client else ""
    return resolve(
        peer,
        _header_values(request, settings.forwarded_header),
        trusted=[ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies],
        header=settings.forwarded_header,
    )


def resolve(
    peer: str, header_values: Sequence[str], *, trusted: Sequence[Network], header: str
) -> str:
    """The public address for a socket peer and the forwarded header's values (in order)."""
    address = parse_address(peer)
    if address is None:
        return peer[:64] or "unknown"
    if not _in(address, trusted):
        return str(address)
    hops = list(_hops(header_values, header))
    current = address
    for hop in reversed(hops):
        parsed = parse_address(hop)
        if parsed is None:
            break
        current = parsed
        if not _in(parsed, trusted):
            return str(parsed)
    return str(current)


def _in(address: IPAddress, networks: Iterable[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def _header_values(request: Request, header: str) -> list[str]:
    return request.headers.getlist(header)


def _hops(values: Sequence[str], header: str) -> Iterable[str]:
    for value in values:
        for element in value.split(","):
            if header == "x-forwarded-for":
                yield element.strip()
                continue
            # RFC 7239: `for=192.0.2.1;proto=https`, `for="[2001:db8::1]:4711"`
            hop = ""
            for pair in element.split(";"):
                name, _, raw = pair.strip().partition("=")
                if name.lower() == "for":
                    hop = _strip_port(raw.strip().strip('"'))
            yield hop


def _strip_port(text: str) -> str:
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


def local_address_problem(value: str) -> str | None:
    """Why `value` is not a HOST:PORT on a local network, or None when it is."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"local_address {value!r} is not HOST:PORT"
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return f"local_address {value!r}: an IPv6 address goes in brackets, [fd00::1]:46001"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"local_address {value!r}: the host must be an IP address, not a name"
    if not _in(address, LOCAL_NETWORKS):
        return f"local_address {value!r} is not in a local network (RFC 1918, loopback, ULA)"
    return None
