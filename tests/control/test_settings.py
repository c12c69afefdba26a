"""Settings: TOML in the data directory, then LABGATE_*, then flags; placeholders refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from labgate.auth.passwords import PasswordHasher
from labgate.control.accounts import password_rules
from labgate.control.settings import ControlSettings


def test_precedence_is_flags_then_environment_then_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "server.toml").write_text('listen = "127.0.0.1:9000"\nissuer = "from-file"\n')
    assert ControlSettings.load(tmp_path).listen == "127.0.0.1:9000"
    monkeypatch.setenv("LABGATE_LISTEN", "127.0.0.1:9001")
    assert ControlSettings.load(tmp_path).listen == "127.0.0.1:9001"
    assert ControlSettings.load(tmp_path, listen="127.0.0.1:9002").listen == "127.0.0.1:9002"
    assert ControlSettings.load(tmp_path).issuer == "from-file"


@pytest.mark.parametrize("secret", ["changethis", "secret", "short"])
def test_placeholder_or_short_passphrase_is_refused(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValidationError, match="key_passphrase"):
        ControlSettings.load(tmp_path, key_passphrase=secret)


def test_unknown_option_and_bad_listen_are_refused(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("lisen = 1\n")
    with pytest.raises(ValidationError, match="lisen"):
        ControlSettings.load(tmp_path)
    with pytest.raises(ValidationError, match="HOST:PORT"):
        ControlSettings(data_dir=tmp_path, listen="8443")


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    settings = ControlSettings.load(tmp_path)
    assert settings.user_access_seconds == 300
    assert settings.device_access_seconds == 24 * 3600
    assert settings.user_refresh_seconds == 2 * 3600
    assert settings.refresh_grace_seconds == 30
    assert settings.lockout_threshold == 100
    assert settings.password_policy == "nist"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'labgate.db'}"


def test_production_argon2_parameters_hash_and_verify(tmp_path: Path) -> None:
    rules = password_rules(ControlSettings.load(tmp_path))
    assert rules.hasher == PasswordHasher()
    assert (rules.hasher.time_cost, rules.hasher.memory_cost_kib, rules.hasher.parallelism) == (
        3,
        65536,
        4,
    )
    stored = rules.hasher.hash("violet staple hammock orbit quietly")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert rules.hasher.verify(stored, "violet staple hammock orbit quietly")
    assert not rules.hasher.verify(stored, "violet staple hammock orbit quietly!")
