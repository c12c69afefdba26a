"""Certificate profiles: what a server, client, device or gateway certificate may say; the check.

| profile | extended key usage      | identity SAN URI       | DNS/IP SANs  | default life |
|---------|-------------------------|------------------------|--------------|--------------|
| server  | serverAuth              | none                   | at least one | 90 days      |
| client  | clientAuth              | labgate:user:<name>    | refused      | 24 hours     |
| device  | clientAuth + serverAuth | labgate:device:<id>    | allowed      | 90 days      |
| gateway | serverAuth + clientAuth | labgate:gateway:<name> | allowed      | 90 days      |

Other URIs (not `labgate:`) are allowed on every profile; a `labgate:` URI other than the profile's
own identity never is, or a client could name itself a gateway.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from labgate.pki import identity, names
from labgate.pki.decisions import Allowed, Decision, Denied

_T = TypeVar("_T")


class Profile(StrEnum):
    SERVER = "server"
    CLIENT = "client"
    DEVICE = "device"
    GATEWAY = "gateway"

    @property
    def extended_key_usages(self) -> tuple[ObjectIdentifier, ...]:
        server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
        return {
            Profile.SERVER: (server,),
            Profile.CLIENT: (client,),
            Profile.DEVICE: (client, server),
            Profile.GATEWAY: (server, client),
        }[self]

    @property
    def default_lifetime(self) -> timedelta:
        # Client certificates are short-lived, so a lost laptop stops working by itself tomorrow.
        return timedelta(hours=24) if self is Profile.CLIENT else timedelta(days=90)

    @property
    def allows_host_names(self) -> bool:
        return self is not Profile.CLIENT

    def identity_uri(self, name: str) -> str | None:
        match self:
            case Profile.SERVER:
                return None
            case Profile.CLIENT:
                return identity.user_uri(name)
            case Profile.DEVICE:
                return identity.device_uri(name)
            case Profile.GATEWAY:
                return identity.gateway_uri(name)


# A certificate lives at most this long even if asked for more; the issuing CA lives 2 years.
MAX_LIFETIME = timedelta(days=825)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafRequest:
    """What a leaf certificate will say, after names were validated, before the profile check."""

    profile: Profile
    name: str
    dns: tuple[str, ...] = ()
    ips: tuple[names.IPAddress, ...] = ()
    uris: tuple[str, ...] = ()

    @property
    def all_uris(self) -> tuple[str, ...]:
        """The profile's identity URI first, then the requested ones not already present."""
        own = self.profile.identity_uri(self.name)
        first = (own,) if own is not None else ()
        return first + tuple(u for u in self.uris if u != own)


def build_request(
    profile: Profile,
    name: str,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str | names.IPAddress] = (),
    uris: Sequence[str] = (),
) -> LeafRequest:
    """Validate every name (raising InvalidName); the profile check is `judge`'s."""
    wildcard = profile is Profile.SERVER
    return LeafRequest(
        profile=profile,
        name=names.identity_name(name),
        dns=_unique(names.dns_name(d, wildcard=wildcard) for d in dns),
        ips=_unique(names.ip_address(a) for a in ips),
        uris=_unique(names.uri(u) for u in uris),
    )


def judge(request: LeafRequest) -> Decision:
    """Whether `request` fits its profile; a denial names the offending SAN and the profile."""
    profile = request.profile
    if not profile.allows_host_names and (request.dns or request.ips):
        first = request.dns[0] if request.dns else str(request.ips[0])
        return Denied(
            reason=f"a {profile} certificate may not carry a server SAN (DNS/IP {first!r}); "
            "use the server, device or gateway profile"
        )
    if profile is Profile.SERVER and not (request.dns or request.ips):
        return Denied(reason="a server certificate needs at least one DNS or IP SAN")
    own = profile.identity_uri(request.name)
    for value in request.uris:
        if identity.is_labgate_uri(value) and value != own:
            expected = f"only {own!r}" if own else "none"
            return Denied(
                reason=f"SAN URI {value!r} is a labgate identity this {profile} certificate "
                f"may not claim (expected {expected})"
            )
    return Allowed()


def request_of(cert: x509.Certificate, profile: Profile, name: str) -> LeafRequest:
    """The request an issued certificate answered: its name and SANs (for renewal)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return build_request(profile, name)
    return build_request(
        profile,
        name,
        dns=san.get_values_for_type(x509.DNSName),
        ips=_addresses(san.get_values_for_type(x509.IPAddress)),
        uris=san.get_values_for_type(x509.UniformResourceIdentifier),
    )


def _addresses(values: Sequence[object]) -> list[str | names.IPAddress]:
    # An IP SAN in a leaf is always an address; networks appear only in name constraints.
    return [v for v in values if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address)]


def _unique(values: Iterable[_T]) -> tuple[_T, ...]:
    """The values in order, each once: asking twice for a SAN is not an error, nor two SANs."""
    return tuple(dict.fromkeys(values))
