"""The link proof: made from the secret, bound to its ids, useless with any other."""

from __future__ import annotations

import pytest

from labgate.auth.linkproof import is_secret_shaped, link_proof, new_local_secret, proof_matches

IDS = {"instance_id": "i" * 22, "verification_id": "v" * 32, "device_id": "d-0123456789abcdef"}


def test_the_proof_matches_only_its_own_secret_and_ids() -> None:
    secret = new_local_secret()
    proof = link_proof(secret, **IDS)
    assert proof_matches(proof, secret, **IDS)
    assert secret not in proof
    assert not proof_matches(proof, new_local_secret(), **IDS)
    for name in IDS:
        assert not proof_matches(proof, secret, **{**IDS, name: IDS[name] + "x"})


def test_a_secret_has_exactly_256_bits_in_base64url() -> None:
    secret = new_local_secret()
    assert len(secret) == 43 and is_secret_shaped(secret)
    assert new_local_secret() != secret
    for bad in ("", "a" * 42, "a" * 44, "+" * 43, "a" * 42 + "="):
        assert not is_secret_shaped(bad)
        with pytest.raises(ValueError, match="43 base64url"):
            link_proof(bad, **IDS)


def test_a_known_vector_pins_the_wire_format() -> None:
    # What the README states: HMAC-SHA256 keyed by the secret over the context and ids.
    import base64
    import hashlib
    import hmac

    secret = "A" * 43
    message = b"labgate-link-v1\n" + b"\n".join(v.encode() for v in IDS.values())
    expected = base64.urlsafe_b64encode(
        hmac.new(secret.encode(), message, hashlib.sha256).digest()
    ).rstrip(b"=")
    assert link_proof(secret, **IDS) == expected.decode()
