"""What a name in a certificate may be: subject names, DNS names, IP addresses and URIs.

A name that breaks a rule is refused with the rule it breaks, never escaped or trimmed: a
certificate must say exactly what its holder asked for, or nothing.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from labgate.pki.errors import InvalidName

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 5280's upper bound for a commonName (ub-common-name).
MAX_NAME = 64
# RFC 1035: 253 characters in presentation form, 63 per label.
MAX_DNS = 253
MAX_LABEL = 63
# Long enough for any sensible identifier; short enough that a SAN stays a name, not a payload.
MAX_URI = 1024

# Identity names become part of a `labgate:<kind>:<name>` URI, so they keep to characters that
# need no escaping there; a leading letter or digit keeps them from looking like options.
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def identity_name(name: str) -> str:
    """A certificate holder's name (user, device, gateway, server): short, plain ASCII."""
    _check_length("name", name, MAX_NAME)
    if not _IDENTITY.fullmatch(name):
        raise InvalidName(
            f"name {name!r} may hold only letters, digits and . _ @ + - "
            "and must start with a letter or digit"
        )
    return name


def display_name(name: str) -> str:
    """A CA's human name ("Lab CA"): printable text, no control characters, no edge spaces."""
    _check_length("CA name", name, MAX_NAME)
    for char in name:
        if unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}:
            raise InvalidName(
                f"CA name {name!r} holds a control or unprintable character U+{ord(char):04X}"
            )
    if name != name.strip():
        raise InvalidName(f"CA name {name!r} starts or ends with white space")
    return name


def dns_name(name: str, *, wildcard: bool = False) -> str:
    """A DNS name in A-label form, lower-cased; `*.` leading label only when `wildcard`."""
    _check_length("DNS name", name, MAX_DNS)
    if not name.isascii():
        raise InvalidName(f"DNS name {name!r} is not ASCII; give its xn-- (A-label) form")
    lowered = name.lower()
    labels = lowered.split(".")
    if labels[0] == "*":
        if not wildcard:
            raise InvalidName(f"DNS name {name!r} is a wildcard, which this profile does not allow")
        labels = labels[1:]
        if len(labels) < 2:
            raise InvalidName(f"wildcard {name!r} must cover a name of at least two labels")
    for label in labels:
        if len(label) > MAX_LABEL or not _LABEL.fullmatch(label):
            raise InvalidName(
                f"DNS name {name!r} has a bad label {label!r}: 1-63 letters, digits or '-', "
                "not starting or ending with '-'"
            )
    return lowered


def ip_address(text: str | IPAddress) -> IPAddress:
    """An IP address; the unspecified address names no host, so it is refused."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidName(f"{text!r} is not an IPv4 or IPv6 address") from None
    if address.is_unspecified or address.is_multicast:
        raise InvalidName(f"IP address {address} names no single host")
    return address


def uri(text: str) -> str:
    """An absolute URI of RFC 3986 characters (percent-escapes allowed, none added)."""
    _check_length("URI", text, MAX_URI)
    if not _URI.fullmatch(text):
        raise InvalidName(
            f"URI {text!r} is not an absolute URI (scheme:rest) of RFC 3986 characters"
        )
    return text


def _check_length(what: str, value: str, limit: int) -> None:
    if not value:
        raise InvalidName(f"{what} is empty")
    if len(value) > limit:
        raise InvalidName(
            f"{what} {value[:limit]!r}... is {len(value)} characters (at most {limit})"
        )
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise InvalidName(f"{what} {value!r} holds a control character")
