"""The local secret: 256 random bits kept in memory for one start and shown to nothing.

It is never written to a file, a log line, an exception or a repr: `repr()` and `str()` say
`<hidden>`, and the one way to read it is `reveal()`, called by the local page when it hands the
secret to the browser and by the proof check. The server never sends it back; it sends a proof
(an HMAC keyed with the secret) that the agent recomputes and compares in constant time.
"""

from __future__ import annotations

import secrets

from labgate.auth.linkproof import new_local_secret, proof_matches


class LocalSecret:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        # 32 bytes -> exactly 43 base64url characters without padding (the wire format).
        self._value = new_local_secret()

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "LocalSecret(<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> str:  # never pickled into a crash dump or a queue
        raise TypeError("the local secret cannot be serialised")

    def proves(self, *, instance_id: str, verification_id: str, device_id: str, proof: str) -> bool:
        """Whether the server's proof was made from this secret for these ids (constant time)."""
        return proof_matches(
            proof,
            self._value,
            instance_id=instance_id,
            verification_id=verification_id,
            device_id=device_id,
        )


def new_instance_id() -> str:
    """A fresh id per start: 128 random bits, base64url (22 characters)."""
    return secrets.token_urlsafe(16)
