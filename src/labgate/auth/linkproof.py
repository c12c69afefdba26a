"""The proof a control server forwards to an agent instead of its local secret.

The browser reads the agent's secret from the agent's local page and posts it to the server;
the server turns it into a proof bound to one verification and forgets it. The agent recomputes
the proof with its own secret and compares. So no database row, log line or backup ever holds
the secret, and a proof is worth nothing outside the verification, device id and instance it
names:

    proof = base64url_nopad(HMAC-SHA256(key=secret (ASCII),
                                        msg="labgate-link-v1\\n" + instance_id + "\\n"
                                            + verification_id + "\\n" + device_id))

The secret is 256 random bits as 43 base64url characters; anything else is refused before any
HMAC is made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SECRET_BYTES = 32
SECRET_PATTERN = r"^[A-Za-z0-9_-]{43}$"  # noqa: S105 (a shape, not a secret)
_SECRET = re.compile(SECRET_PATTERN)
_CONTEXT = "labgate-link-v1"


def new_local_secret() -> str:
    """A fresh local secret: 256 bits from `secrets`, 43 base64url characters."""
    return secrets.token_urlsafe(SECRET_BYTES)


def is_secret_shaped(text: str) -> bool:
    return _SECRET.fullmatch(text) is not None


def link_proof(secret: str, *, instance_id: str, verification_id: str, device_id: str) -> str:
    if not is_secret_shaped(secret):
        raise ValueError("a local secret is 43 base64url characters (256 bits)")
    message = "\n".join((_CONTEXT, instance_id, verification_id, device_id)).encode("utf-8")
    digest = hmac.new(secret.encode("ascii"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def proof_matches(
    proof: str, secret: str, *, instance_id: str, verification_id: str, device_id: str
) -> bool:
    """Whether `proof` was made from `secret` for these ids (constant-time)."""
    expected = link_proof(
        secret, instance_id=instance_id, verification_id=verification_id, device_id=device_id
    )
    return hmac.compare_digest(expected.encode("ascii"), proof.encode("ascii", "replace"))
