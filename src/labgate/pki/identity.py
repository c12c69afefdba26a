"""labgate identities: the `labgate:<kind>:<name>` SAN URI that says who holds a certificate."""

from __future__ import annotations

from cryptography import x509

from labgate.pki import names

SCHEME = "labgate:"
USER = "user"
DEVICE = "device"
GATEWAY = "gateway"


def user_uri(name: str) -> str:
    return f"{SCHEME}{USER}:{names.identity_name(name)}"


def device_uri(device_id: str) -> str:
    return f"{SCHEME}{DEVICE}:{names.identity_name(device_id)}"


def gateway_uri(name: str) -> str:
    return f"{SCHEME}{GATEWAY}:{names.identity_name(name)}"


def is_labgate_uri(value: str) -> bool:
    return value.lower().startswith(SCHEME)


def labgate_uris(certificate: x509.Certificate) -> tuple[str, ...]:
    """Every `labgate:` SAN URI of the certificate, in order (one, in a certificate of ours)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    found = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return tuple(u for u in found if is_labgate_uri(u))


def identity_of(certificate: x509.Certificate) -> str | None:
    """The certificate's single `labgate:` SAN URI, or None if it has none or, ambiguously, several.

    This CA never issues a certificate with two identities; one that has them is not trusted to
    name anyone (`labgate_uris` tells the two cases apart, to say which it was).
    """
    found = labgate_uris(certificate)
    return found[0] if len(found) == 1 else None
