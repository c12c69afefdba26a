"""Release key files: encrypted, 0600, refused when too open or under a wrong passphrase."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labgate.releases import keyfiles
from labgate.releases.errors import KeyFileError

PASSPHRASE = b"a long release passphrase"


def test_key_file_is_encrypted_and_private(tmp_path: Path) -> None:
    signer = keyfiles.generate()
    path = tmp_path / "root-1.key"
    keyfiles.write_key(path, signer, PASSPHRASE)
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    loaded = keyfiles.load_key(path, PASSPHRASE)
    assert loaded.public_key.keyid == signer.public_key.keyid


def test_wrong_passphrase_is_named_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "targets.key"
    keyfiles.write_key(path, keyfiles.generate(), PASSPHRASE)
    with pytest.raises(KeyFileError, match=r"does not decrypt key file targets\.key") as caught:
        keyfiles.load_key(path, b"another long passphrase")
    assert "another" not in str(caught.value)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "online.key"
    keyfiles.write_key(path, keyfiles.generate(), PASSPHRASE)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        keyfiles.load_key(path, PASSPHRASE)


@pytest.mark.parametrize("passphrase", [b"changeme", b"short"])
def test_weak_passphrase_is_refused(tmp_path: Path, passphrase: bytes) -> None:
    with pytest.raises(KeyFileError, match=r"root-1\.key"):
        keyfiles.write_key(tmp_path / "root-1.key", keyfiles.generate(), passphrase)
    assert not (tmp_path / "root-1.key").exists()


def test_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "root-1.key"
    keyfiles.write_key(path, keyfiles.generate(), PASSPHRASE)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="exists"):
        keyfiles.write_key(path, keyfiles.generate(), PASSPHRASE)
    assert path.read_bytes() == before
