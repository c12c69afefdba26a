"""`init`: every secret encrypted or private, and nothing overwritten, on disk or in a database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labgate.control.errors import AlreadyInitialised
from labgate.control.provisioning import initialise
from labgate.control.settings import ControlSettings


def test_keys_are_encrypted_and_secrets_private(settings: Any) -> None:
    data = settings.data_dir
    assert b"ENCRYPTED PRIVATE KEY" in (data / "signing-keys.json").read_bytes()
    for name in ("root.key", "issuing.key"):
        assert b"ENCRYPTED PRIVATE KEY" in (data / "ca" / name).read_bytes()
    for path in (
        data / "secrets" / "key-passphrase",
        data / "admin-password",
        data / "server.key",
        data / "signing-keys.json",
        data / "server.toml",
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (data / "secrets").stat().st_mode & 0o777 == 0o700


def test_a_database_holding_a_server_is_not_taken_over(settings: Any, tmp_path: Path) -> None:
    if settings.database_url is None:
        pytest.skip("the SQLite database lives inside the data directory")
    other = ControlSettings.load(tmp_path / "second", database_url=settings.database_url)
    with pytest.raises(AlreadyInitialised, match="already holds users"):
        initialise(other, config={})


def test_same_directory_is_not_initialised_twice(settings: Any) -> None:
    with pytest.raises(AlreadyInitialised, match="already holds a server"):
        initialise(settings, config={})
