"""TLS contexts from the CA's material: a server that requires a client certificate, and a client;
and the one TLS profile every labgate server offers its clients (the gateway and the control
server alike take it from here).

Both trust only the given root (never the system store), speak TLS 1.2 or newer, and verify
strictly (RFC 5280 rules OpenSSL otherwise lets slide). OpenSSL checks the peer's extended key
usage by itself: a server accepts only clientAuth certificates from clients, a client only
serverAuth certificates from servers.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from labgate.pki.tlsgroups import set_groups

# Mozilla's server-side TLS guidelines (5.7), "intermediate" configuration: the TLS 1.2 suites,
# in OpenSSL's names. TLS 1.3's are OpenSSL 3's defaults, which are the profile's three
# (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305); Python has no call to set them otherwise. The DHE
# suites are listed as the profile lists them, but need an RSA certificate and DH parameters,
# neither of which labgate's servers have, so only the ECDHE ones are ever offered.
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)
# The same profile's key-exchange groups, for TLS 1.2 and 1.3; OpenSSL 3 alone also accepts X448,
# secp521r1 and the finite-field groups.
INTERMEDIATE_GROUPS = ("X25519", "prime256v1", "secp384r1")


def intermediate_profile(context: ssl.SSLContext) -> None:
    """Put Mozilla's intermediate profile on a server context: TLS 1.2 and 1.3 only, the
    profile's suites and groups, no compression, no renegotiation."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    set_groups(context, INTERMEDIATE_GROUPS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def server_context(
    *,
    chain: Path,
    key: Path,
    client_ca: Path | None,
    crl: Path | None = None,
    key_password: bytes | None = None,
) -> ssl.SSLContext:
    """A server context presenting `chain` (leaf then issuing CA) with `key`.

    With `client_ca` (the root), every client must present a certificate that chains to it; with
    `crl` too, a revoked client certificate is refused during the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    intermediate_profile(context)
    context.load_cert_chain(chain, key, password=key_password)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=client_ca)
        if crl is not None:
            context.load_verify_locations(cafile=crl)
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    elif crl is not None:
        raise ValueError("a CRL without client_ca has nothing to check: give client_ca too")
    return context


def client_context(
    *,
    ca: Path,
    chain: Path | None = None,
    key: Path | None = None,
    check_hostname: bool = True,
    key_password: bytes | None = None,
) -> ssl.SSLContext:
    """A client context trusting only `ca` (the root), presenting `chain` and `key` if given.

    `chain` may be a combined file (chain and key in one, what qslib takes) with `key` None.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(context)
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=ca)
    if chain is not None:
        context.load_cert_chain(chain, key, password=key_password)
    elif key is not None:
        raise ValueError("a client key without its certificate chain: give chain too")
    return context


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.options |= ssl.OP_NO_COMPRESSION
