"""The proof check: the server's proof for this instance, verification and device only."""

from __future__ import annotations

import re

from labgate.agent.secret import LocalSecret, new_instance_id
from labgate.auth.linkproof import link_proof


def test_a_secret_is_256_bits_of_base64url_and_fresh_each_time() -> None:
    values = {LocalSecret().reveal() for _ in range(50)}
    assert len(values) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", v) for v in values)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", new_instance_id())


def test_the_right_proof_is_accepted() -> None:
    secret = LocalSecret()
    ids = {"instance_id": "i" * 22, "verification_id": "v1", "device_id": "d1"}
    assert secret.proves(proof=link_proof(secret.reveal(), **ids), **ids)


def test_a_proof_from_another_secret_or_for_other_ids_is_refused() -> None:
    secret = LocalSecret()
    ids = {"instance_id": "i" * 22, "verification_id": "v1", "device_id": "d1"}
    right = link_proof(secret.reveal(), **ids)
    assert not secret.proves(proof=link_proof(LocalSecret().reveal(), **ids), **ids)
    assert not secret.proves(proof=right, **{**ids, "device_id": "d2"})
    assert not secret.proves(proof=right, **{**ids, "verification_id": "v2"})
    assert not secret.proves(proof=right, **{**ids, "instance_id": "j" * 22})
    assert not secret.proves(proof="", **ids)
    assert not secret.proves(proof=secret.reveal(), **ids)  # the secret itself is not a proof
    assert not secret.proves(proof="é" * 43, **ids)
