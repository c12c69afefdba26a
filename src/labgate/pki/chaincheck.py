"""Checking a certificate chain before it is installed: a customer's own CA's certificate for what
the gateway or the control server serves.

`check_chain` reads a PEM file (leaf first, then the intermediates, the root optional), the
private key meant for it and the names it must answer to, and says everything wrong at once, one
line a problem: certificates out of order or missing, a key that is not the leaf's, a certificate
not valid now, a name not covered. What is right is reported too (how long the leaf is valid).

Names follow RFC 6125 (section 6.4): only subjectAltName counts (the CN is ignored when there are
SANs, and labgate refuses a server certificate without them); DNS names compare case-insensitively
without a trailing dot; a wildcard is the whole left-most label (`*.lab.example`), stands for
exactly one label, never for a partial label (`w*.lab.example`) and never in a name of fewer
than three labels (`*.example`); an IP address matches an iPAddress SAN only, never a DNS SAN or
a wildcard.

After the checks of its own, the path is validated by cryptography's RFC 5280 verifier against the
root (in the file, or given as `anchors`), so nothing this module forgets to check is passed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from labgate.pki import keys
from labgate.pki.errors import PassphraseRequired, PkiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Fewer days left than this is said in the report (not a problem: it is valid).
SOON_DAYS = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """What `check_chain` found: `problems` empty means the chain may be installed."""

    problems: tuple[str, ...]
    notes: tuple[str, ...]
    subjects: tuple[str, ...]
    not_after: datetime | None
    days_left: float | None
    names: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def _label(index: int, cert: x509.Certificate) -> str:
    return f"certificate {index + 1} ({cert.subject.rfc4514_string()})"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert)


def read_chain(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise PkiError(
            "no PEM certificate in the chain file (expected -----BEGIN CERTIFICATE-----)"
        )
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PkiError(f"the chain file holds a certificate that does not parse: {exc}") from None


def check_chain(
    chain: Sequence[x509.Certificate],
    *,
    key_pem: bytes | None,
    names: Sequence[str],
    now: datetime,
    anchors: Sequence[x509.Certificate] = (),
    key_source: str = "the key",
) -> ChainReport:
    """Every problem with installing `chain` with the key in `key_pem` to serve `names`."""
    problems: list[str] = []
    notes: list[str] = []
    if not chain:
        raise PkiError("the chain file holds no certificate")
    order_problems, path = _order(chain, anchors)
    problems += order_problems
    leaf = path[0]
    problems += _leaf_kind(leaf)
    if key_pem is not None:
        problems += _key(leaf, key_pem, key_source)
    for cert in path:
        index = chain.index(cert)
        if now < cert.not_valid_before_utc:
            problems.append(
                f"{_label(index, cert)} is not valid until {_iso(cert.not_valid_before_utc)}"
            )
        elif now >= cert.not_valid_after_utc:
            problems.append(f"{_label(index, cert)} expired {_iso(cert.not_valid_after_utc)}")
    days_left = (leaf.not_valid_after_utc - now).total_seconds() / 86400
    if 0 < days_left < SOON_DAYS:
        notes.append(f"the leaf expires in {days_left:.1f} days ({_iso(leaf.not_valid_after_utc)})")
    sans = _sans(leaf)
    for name in names:
        problem = _name_problem(name, sans)
        if problem is not None:
            problems.append(problem)
    if len(chain) > 1 and _self_signed(chain[-1]):
        notes.append("the file ends with its root; peers have it already (sending it is harmless)")
    if not problems:
        problems += _path(path, anchors, names, now)
    return ChainReport(
        problems=tuple(problems),
        notes=tuple(notes),
        subjects=tuple(c.subject.rfc4514_string() for c in chain),
        not_after=leaf.not_valid_after_utc,
        days_left=days_left,
        names=tuple(_shown(s) for s in sans),
    )


def _order(
    chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]
) -> tuple[list[str], list[x509.Certificate]]:
    """Problems of order and completeness, and the path as it should be: the leaf (the first
    certificate that is no CA), then each one's issuer from the file, up to a root (in the file,
    or one of `anchors`)."""
    problems: list[str] = []
    leaf_at = next((i for i, c in enumerate(chain) if not _is_ca(c)), 0)
    path = [chain[leaf_at]]
    while True:
        current = path[-1]
        if _self_signed(current) or any(_issued_by(current, a) for a in anchors):
            break
        issuer = next((c for c in chain if c not in path and _issued_by(current, c)), None)
        if issuer is None:
            problems.append(
                f"incomplete: nothing in the file issued {_label(chain.index(current), current)}"
                + _missing(current, anchors)
            )
            break
        path.append(issuer)
    if leaf_at != 0:
        problems.append(
            f"out of order: the leaf is {_label(leaf_at, chain[leaf_at])}; it must come first"
        )
    on_path = [c for c in chain if c in path]
    if leaf_at == 0 and on_path != path:
        problems.append(
            "out of order: each certificate must be followed by its issuer: "
            + " -> ".join(c.subject.rfc4514_string() for c in path)
        )
    for index, cert in enumerate(chain):
        if cert not in path:
            problems.append(f"{_label(index, cert)} is not part of the leaf's chain")
    return problems, path


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _missing(cert: x509.Certificate, anchors: Sequence[x509.Certificate]) -> str:
    if any(_issued_by(cert, a) for a in anchors):
        return ""
    hint = "" if anchors else "; give the customer's root with --ca"
    return f"; missing the certificate of its issuer {cert.issuer.rfc4514_string()}{hint}"


def _leaf_kind(leaf: x509.Certificate) -> list[str]:
    problems = []
    if _is_ca(leaf):
        problems.append("the file holds no leaf: every certificate in it is a CA certificate")
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
            problems.append("the leaf's extended key usage does not include serverAuth")
    except x509.ExtensionNotFound:
        pass
    return problems


def _key(leaf: x509.Certificate, key_pem: bytes, source: str) -> list[str]:
    try:
        private = keys.load_private(key_pem, None, source=source)
    except PassphraseRequired:
        return [f"{source} is encrypted; the gateway and the control server load it unencrypted"]
    except PkiError as exc:
        return [str(exc)]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if keys.public_der(private.public_key()) != leaf.public_key().public_bytes(*spki):
        return [f"{source} is not the key of the leaf ({leaf.subject.rfc4514_string()})"]
    return []


Name = str | IPAddress


def _sans(leaf: x509.Certificate) -> list[Name]:
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[Name] = [d.lower().rstrip(".") for d in sans.get_values_for_type(x509.DNSName)]
    for address in sans.get_values_for_type(x509.IPAddress):
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            out.append(address)
    return out


def _shown(name: Name) -> str:
    return name if isinstance(name, str) else str(name)


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _name_problem(wanted: str, sans: Sequence[Name]) -> str | None:
    try:
        address = ipaddress.ip_address(wanted.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        if address in sans:
            return None
        return f"IP address {address} is not among the leaf's IP SANs"
    host = wanted.lower().rstrip(".")
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return f"--name {wanted!r} is not a DNS name in A-label form, nor an IP address"
    if not sans:
        return f"the leaf has no subjectAltName; {wanted} is not covered (the CN does not count)"
    for san in sans:
        if isinstance(san, str) and _dns_matches(san, labels):
            return None
    return f"{wanted} is not covered by the leaf's names ({', '.join(map(_shown, sans)) or 'none'})"


def _dns_matches(san: str, labels: list[str]) -> bool:
    pattern = san.split(".")
    if len(pattern) != len(labels):
        return False  # a wildcard stands for exactly one label
    first, rest = pattern[0], pattern[1:]
    if rest != labels[1:]:
        return False
    if first == "*":
        # RFC 6125 6.4.3 and CA/B Forum: the whole left-most label, under at least two labels.
        return len(pattern) >= 3
    # "w*.example" (a partial wildcard) is not honoured: a literal "*" never matches.
    return first == labels[0]


def _path(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    names: Sequence[str],
    now: datetime,
) -> list[str]:
    """The whole path through cryptography's RFC 5280 verifier, for each name."""
    roots = list(anchors) + [c for c in chain[1:] if _self_signed(c)]
    if not roots:
        return []  # the root is nowhere here: `_order` said so already
    intermediates = [c for c in chain[1:] if not _self_signed(c)]
    problems = []
    builder = verification.PolicyBuilder().store(verification.Store(roots)).time(now)
    for name in names:
        subject: verification.Subject
        try:
            subject = x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
        except ValueError:
            subject = x509.DNSName(name.rstrip("."))
        try:
            builder.build_server_verifier(subject).verify(chain[0], intermediates)
        except verification.VerificationError as exc:
            problems.append(f"the path to the root does not verify for {name}: {exc}")
    return problems


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")
