"""The end of both flows: the server's enrolment answer, checked and stored with the key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from labgate.agent.errors import AgentError
from labgate.agent.store import Linked, Store, Tokens
from labgate.pki import keypair
from labgate.pki.keys import PrivateKey


def tokens_from(body: dict[str, Any], now: datetime) -> Tokens:
    try:
        return Tokens(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            issued_at=now,
            expires_at=now + timedelta(seconds=int(body["expires_in"])),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise AgentError(f"the server's token answer lacks {error}") from None


def accept(store: Store, body: Any, key: PrivateKey, device_id: str) -> Linked:
    """Check the certificate is for our key and our device id, then store all of it."""
    if not isinstance(body, dict):
        raise AgentError("the server's enrolment is not a JSON object")
    try:
        certificate_pem = str(body["certificate_pem"])
        chain_pem = str(body.get("chain_pem") or "")
        answered_id = str(body["device_id"])
        identity = str(body["identity"])
    except KeyError as error:
        raise AgentError(f"the server's enrolment lacks {error}") from None
    if answered_id != device_id:
        raise AgentError(f"the enrolment is for device {answered_id!r}, not {device_id!r}")
    certificate, serial = keypair.validity(certificate_pem)
    if not same_key(certificate.public_key(), key):
        raise AgentError("the issued certificate does not carry this device's public key")
    now = datetime.now(UTC)
    linked = Linked(
        device_id=device_id,
        identity=identity,
        serial=serial,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        linked_at=now,
    )
    store.save_link(
        linked, keypair.combined_pem(key, certificate_pem, chain_pem), tokens_from(body, now)
    )
    return linked


def same_key(public: object, key: PrivateKey) -> bool:
    from cryptography.hazmat.primitives import serialization

    mine = key.public_key()
    if isinstance(mine, ec.EllipticCurvePublicKey) and not isinstance(
        public, ec.EllipticCurvePublicKey
    ):
        return False
    encoding, fmt = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return bool(public.public_bytes(encoding, fmt) == mine.public_bytes(encoding, fmt))  # type: ignore[attr-defined]
    except AttributeError:
        return False
