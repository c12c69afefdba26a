"""The key passphrase and key ring on disk: private, and refused when they are not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from labgate.control import keystore
from labgate.control.errors import ConfigurationError, NotInitialised
from labgate.control.settings import ControlSettings


def test_passphrase_readable_by_others_is_refused(settings: Any) -> None:
    path = settings.passphrase_path
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        keystore.load_passphrase(settings)


def test_wrong_passphrase_does_not_open_the_key_ring(settings: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"signing-keys\.json"):
        keystore.read_keyring(keystore.keyring_path(settings), b"not the passphrase at all")


def test_missing_server_is_named(tmp_path: Any) -> None:
    empty = ControlSettings.load(tmp_path)
    with pytest.raises(NotInitialised, match="labgate server init"):
        keystore.load_passphrase(empty)


def test_rotation_is_seen_by_a_running_process(settings: Any, monkeypatch: Any) -> None:
    passphrase = keystore.load_passphrase(settings)
    path = keystore.keyring_path(settings)
    running = keystore.SigningKeys(path, passphrase)
    before = running.ring().current.kid
    rotated = keystore.rotate(path, passphrase, now=datetime.now(UTC))
    monkeypatch.setattr(keystore, "RELOAD_INTERVAL_SECONDS", 0.0)
    assert running.ring().current.kid == rotated.current.kid != before
    assert path.stat().st_mode & 0o777 == 0o600
