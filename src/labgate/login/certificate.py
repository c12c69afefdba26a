"""A client certificate for the logged-in person, in the one file qslib takes.

A new P-256 key is made here for every certificate and never leaves this machine; the server
signs a CSR naming the person (its common name is the account's name, the only name the server
will certify for them). The certificate, its chain and the key go into one PEM file, in the
order `ssl.SSLContext.load_cert_chain` reads (certificate, chain, key), written atomically with
mode 0600: `qslib.Machine(..., client_certificate_path=that file)` uses it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from labgate.login.errors import LoginError
from labgate.login.session import Authorised
from labgate.pki import keypair, keys
from labgate.pki.atomic import PRIVATE, write_atomic
from labgate.pki.identity import identity_of

CERTIFICATE_FILE = "me.pem"


@dataclass(frozen=True, slots=True, kw_only=True)
class Kept:
    """A certificate written to `path`, with what a person and the renewal loop need of it."""

    path: Path
    identity: str
    serial: str
    not_before: datetime
    not_after: datetime


def get_certificate(authorised: Authorised, out: Path) -> Kept:
    """A new key, a certificate for it from the server, both written to `out` (0600)."""
    me = authorised.call("GET", "/api/v1/me")
    if me.get("kind") != "user":
        raise LoginError(f"this login is for {me.get('identity')}, not a person")
    key = keypair.new_key()
    answer = authorised.call(
        "POST", "/api/v1/certificates", {"csr_pem": keypair.build_csr(key, str(me["name"]))}
    )
    certificate = x509.load_pem_x509_certificate(str(answer["certificate_pem"]).encode("ascii"))
    _check(certificate, key, identity=str(me["identity"]))
    pem = keypair.combined_pem(key, str(answer["certificate_pem"]), str(answer["chain_pem"]))
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(out, pem, mode=PRIVATE)
    return Kept(
        path=out,
        identity=str(me["identity"]),
        serial=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def _check(certificate: x509.Certificate, key: keys.PrivateKey, *, identity: str) -> None:
    """What came back certifies our key and names us; anything else is not written."""
    certified = certificate.public_key()
    ours = keys.public_der(key.public_key())
    if not isinstance(certified, keys.PublicKey) or keys.public_der(certified) != ours:
        raise LoginError("the server's certificate is not for the key made here; nothing written")
    named = identity_of(certificate)
    if named != identity:
        raise LoginError(f"the server's certificate names {named}, not {identity}; nothing written")
