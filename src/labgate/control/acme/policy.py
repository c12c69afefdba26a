"""Which names an account may order: the DNS suffixes and IP ranges of its external account
binding (an account without one, allowed only by `acme_unsafe_eab_optional`, may order any).

A DNS name is covered by a suffix when it is the suffix itself or ends with `.` + suffix
(`lab.example` covers `a.lab.example`, never `evil-lab.example`). An IP address is covered when
it is inside one of the ranges.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from labgate.auth.decisions import Allowed, Decision, Denied
from labgate.pki import names
from labgate.pki.errors import InvalidName

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class Identifier:
    """An ACME identifier (RFC 8555 7.1.4, RFC 8738): `dns` or `ip`, its value normalised."""

    type: str
    value: str

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class NamePolicy:
    """None: any name (no binding). Otherwise only what the suffixes and ranges cover."""

    dns_suffixes: tuple[str, ...] | None
    ip_ranges: tuple[Network, ...] | None

    @classmethod
    def of(cls, dns_suffixes: Sequence[str], ip_ranges: Sequence[str]) -> NamePolicy:
        return cls(
            dns_suffixes=tuple(dns_suffix(s) for s in dns_suffixes),
            ip_ranges=tuple(ip_range(r) for r in ip_ranges),
        )

    @classmethod
    def anything(cls) -> NamePolicy:
        return cls(dns_suffixes=None, ip_ranges=None)

    def judge(self, identifier: Identifier) -> Decision:
        if identifier.type == "dns":
            if self.dns_suffixes is None:
                return Allowed()
            name = identifier.value
            if any(name == s or name.endswith("." + s) for s in self.dns_suffixes):
                return Allowed()
            return Denied(
                reason="dns_outside_policy",
                detail=f"{name} is not under any DNS suffix this account may order "
                f"({', '.join(self.dns_suffixes) or 'none'})",
            )
        if self.ip_ranges is None:
            return Allowed()
        address = ipaddress.ip_address(identifier.value)
        if any(address in network for network in self.ip_ranges):
            return Allowed()
        return Denied(
            reason="ip_outside_policy",
            detail=f"{address} is not in any IP range this account may order "
            f"({', '.join(str(n) for n in self.ip_ranges) or 'none'})",
        )


def dns_suffix(text: str) -> str:
    """A DNS suffix as policy stores it: a DNS name, lower case, no wildcard."""
    try:
        return names.dns_name(text.strip().rstrip("."))
    except InvalidName as error:
        raise ValueError(f"DNS suffix {text!r}: {error}") from None


def ip_range(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"IP range {text!r} is not an address or CIDR network") from None
