"""TLS contexts from the CA's material: a server that requires a client certificate, and a client.

Both trust only the given root (never the system store), speak TLS 1.2 or newer, and verify
strictly (RFC 5280 rules OpenSSL otherwise lets slide). OpenSSL checks the peer's extended key
usage by itself: a server accepts only clientAuth certificates from clients, a client only
serverAuth certificates from servers.
"""

from __future__ import annotations

import ssl
from pathlib import Path


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
