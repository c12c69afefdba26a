"""Fixtures for the auth tests: real keys, real hashes, a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labgate.auth.keyring import KeyRing
from labgate.auth.passwords import PasswordHasher

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def fast_hasher() -> PasswordHasher:
    """argon2id with small parameters, so tests that hash many times stay fast."""
    return PasswordHasher(time_cost=1, memory_cost_kib=1024, parallelism=1)


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate(now=NOW)
