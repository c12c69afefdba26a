"""SPKI pins: an instrument's self-signed certificate is recognised by its public key alone."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from labgate.gateway.errors import PinMismatch


def spki_pin(certificate_der: bytes) -> str:
    """`sha256/BASE64` of the certificate's SubjectPublicKeyInfo (the form HPKP and curl use)."""
    certificate = x509.load_der_x509_certificate(certificate_der)
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def check_pin(certificate_der: bytes | None, *, expected: str, instrument: str) -> None:
    """Raise PinMismatch, naming the pin seen, unless the certificate carries the expected key."""
    seen = spki_pin(certificate_der) if certificate_der else "no certificate"
    if not hmac.compare_digest(seen.encode(), expected.encode()):
        raise PinMismatch(instrument=instrument, expected=expected, seen=seen)
