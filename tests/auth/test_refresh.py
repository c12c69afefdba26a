"""Refresh-token rules from the attacker's side: stolen copies, replays, races, expiry."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import pytest

from labgate.auth.errors import MalformedRefreshToken, SealError
from labgate.auth.lifetimes import REFRESH_GRACE
from labgate.auth.refresh import (
    GraceReplay,
    RefreshTokenState,
    Refused,
    Reuse,
    Rotate,
    decide,
    hash_refresh_token,
    new_refresh_token,
    open_successor,
    seal_successor,
    tokens_equal,
)


def _state(now: datetime, **changes: object) -> RefreshTokenState:
    fields: dict[str, object] = {"family_id": "fam-1", "expires_at": now + timedelta(hours=2)}
    fields.update(changes)
    return RefreshTokenState(**fields)  # type: ignore[arg-type]


def test_new_token_has_256_random_bits_and_its_hash() -> None:
    token, token_hash = new_refresh_token()
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert token_hash == hash_refresh_token(token)
    assert len(token_hash) == 64 and int(token_hash, 16) >= 0
    tokens = {new_refresh_token().token for _ in range(1000)}
    assert len(tokens) == 1000


def test_stored_hash_is_not_the_token() -> None:
    minted = new_refresh_token()
    assert minted.token not in minted.token_hash
    assert hash_refresh_token(minted.token + "x") != minted.token_hash


def test_absurd_presented_tokens_are_refused_before_hashing() -> None:
    for bad in ("", "x" * 10_000):
        with pytest.raises(MalformedRefreshToken):
            hash_refresh_token(bad)


def test_active_token_rotates(now: datetime) -> None:
    assert decide(_state(now), now=now) == Rotate(family_id="fam-1")


def test_unknown_token_is_refused(now: datetime) -> None:
    assert decide(None, now=now) == Refused(reason="unknown_token")


def test_expired_token_is_refused(now: datetime) -> None:
    state = _state(now, expires_at=now)
    assert decide(state, now=now) == Refused(reason="expired")
    assert decide(state, now=now - timedelta(seconds=1)) == Rotate(family_id="fam-1")


def test_token_of_a_revoked_family_is_refused_even_if_active(now: datetime) -> None:
    assert decide(_state(now, family_revoked=True), now=now) == Refused(reason="family_revoked")
    rotated = _state(now, family_revoked=True, rotated_at=now - timedelta(seconds=1))
    assert decide(rotated, now=now) == Refused(reason="family_revoked")


def test_replay_within_grace_gets_the_same_successor(now: datetime) -> None:
    rotated_at = now - timedelta(seconds=10)
    decision = decide(_state(now, rotated_at=rotated_at), now=now)
    assert decision == GraceReplay(family_id="fam-1", rotated_at=rotated_at)


def test_grace_window_edges(now: datetime) -> None:
    rotated_at = now - REFRESH_GRACE
    just_inside = _state(now, rotated_at=rotated_at + timedelta(microseconds=1))
    assert isinstance(decide(just_inside, now=now), GraceReplay)
    at_the_edge = _state(now, rotated_at=rotated_at)
    assert isinstance(decide(at_the_edge, now=now), Reuse)
    at_rotation = _state(now, rotated_at=now)
    assert isinstance(decide(at_rotation, now=now), GraceReplay)


def test_rotation_seen_from_a_replica_with_a_slow_clock_is_within_grace(now: datetime) -> None:
    state = _state(now, rotated_at=now + timedelta(seconds=2))
    assert isinstance(decide(state, now=now), GraceReplay)


def test_replay_after_grace_is_reuse(now: datetime) -> None:
    state = _state(now, rotated_at=now - timedelta(minutes=5))
    decision = decide(state, now=now)
    assert decision == Reuse(family_id="fam-1", rotated_at=now - timedelta(minutes=5))
    assert decision.reason == "refresh_token_reused"


def test_replay_after_successor_was_used_is_reuse_even_within_grace(now: datetime) -> None:
    # The thief replays the old token a second after the real client already moved on.
    state = _state(now, rotated_at=now - timedelta(seconds=1), successor_used=True)
    assert isinstance(decide(state, now=now), Reuse)


def test_stolen_rotated_token_is_reuse_even_after_it_expired(now: datetime) -> None:
    state = _state(now, rotated_at=now - timedelta(hours=3), expires_at=now - timedelta(hours=1))
    assert isinstance(decide(state, now=now), Reuse)


def test_custom_grace_of_zero_disables_replay(now: datetime) -> None:
    state = _state(now, rotated_at=now)
    assert isinstance(decide(state, now=now, grace=timedelta(0)), Reuse)


def test_naive_now_is_refused(now: datetime) -> None:
    with pytest.raises(ValueError, match="timezone"):
        decide(_state(now), now=now.replace(tzinfo=None))


def test_sealed_successor_opens_only_with_the_presented_token() -> None:
    presented = new_refresh_token().token
    successor = b'{"access_token": "a", "refresh_token": "r"}'
    sealed = seal_successor(presented, successor)
    assert successor not in sealed
    assert open_successor(presented, sealed) == successor
    with pytest.raises(SealError):
        open_successor(new_refresh_token().token, sealed)


def test_sealed_successor_cannot_be_opened_from_the_stored_hash() -> None:
    # A database reader holds the hash and the box; the hash is not the key.
    presented = new_refresh_token().token
    sealed = seal_successor(presented, b"pair")
    with pytest.raises(SealError):
        open_successor(hash_refresh_token(presented), sealed)


def test_tampered_seal_is_refused() -> None:
    presented = new_refresh_token().token
    sealed = bytearray(seal_successor(presented, b"pair"))
    sealed[-1] ^= 1
    with pytest.raises(SealError):
        open_successor(presented, bytes(sealed))
    with pytest.raises(SealError):
        open_successor(presented, b"short")


def test_tokens_equal_is_exact() -> None:
    assert tokens_equal("abc", "abc")
    assert not tokens_equal("abc", "abd")
    assert not tokens_equal("abc", "abcd")


def test_session_ends_at_its_absolute_limit_however_often_it_refreshes(now: datetime) -> None:
    limit = now + timedelta(hours=24)
    assert isinstance(decide(_state(now, family_expires_at=limit), now=now), Rotate)
    ended = decide(_state(limit, family_expires_at=limit), now=limit)
    assert ended == Refused(reason="session_expired")
