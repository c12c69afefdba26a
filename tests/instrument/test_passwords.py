"""Secrets files: read with errors that name the entry, made at random 0600, never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labgate.instrument import ConfigError, SimulatorConfig, run_in_thread
from labgate.instrument.passwords import generate_secrets, load_secrets
from labgate.scpi.access import AccessLevel


def test_secrets_file_maps_each_secret_to_its_level(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[[password]]\nlevel = "controller"\nsecret = "one"\n\n'
        '[[password]]\nlevel = "Full"\nsecret = "two"\n'
    )
    assert load_secrets(path) == {"one": AccessLevel.CONTROLLER, "two": AccessLevel.FULL}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[password]]\nlevel = "Boss"\nsecret = "hunter2-secret"\n', "level 'Boss'"),
        ('[[password]]\nlevel = "Observer"\n', "expected exactly 'level' and 'secret'"),
        ('[[password]]\nlevel = "Observer"\nsecret = ""\n', "non-empty"),
        ("password = 3\n", "[[password]] tables"),
        ("[[password]\n", "not valid TOML"),
    ],
)
def test_bad_secrets_name_the_problem_and_not_the_secret(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_secrets(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)
    assert "hunter2-secret" not in str(caught.value)


def test_generated_secrets_are_0600_and_reused(tmp_path: Path) -> None:
    made, path = generate_secrets(tmp_path, AccessLevel.OBSERVER)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(made.values()) == [
        AccessLevel.CONTROLLER,
        AccessLevel.ADMINISTRATOR,
        AccessLevel.FULL,
    ]
    assert all(len(secret) >= 32 for secret in made)
    again, _ = generate_secrets(tmp_path, AccessLevel.OBSERVER)
    assert again == made
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_simulator_without_secrets_writes_them_0600_and_says_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SimulatorConfig(state_dir=tmp_path, plain_port=0, tls_port=None)
    with caplog.at_level("WARNING"), run_in_thread(config) as sim:
        assert sim.passwords_file is not None
        assert stat.S_IMODE(os.stat(sim.passwords_file).st_mode) == 0o600
        secrets = load_secrets(sim.passwords_file)
    assert str(sim.passwords_file) in caplog.text
    for secret in secrets:
        assert secret not in caplog.text


def test_config_repr_hides_passwords(tmp_path: Path) -> None:
    config = SimulatorConfig(state_dir=tmp_path, passwords={"s3cret-value": AccessLevel.FULL})
    assert "s3cret-value" not in repr(config)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"plain_port": 70000}, "plain_port 70000"),
        ({"plain_port": None, "tls_port": None}, "every listener is off"),
        ({"cert": Path("c.pem")}, "--cert and --key"),
        ({"max_connections": 0}, "max_connections 0"),
        ({"time_scale": 0}, "time_scale 0"),
        ({"idle_timeout": 0}, "idle_timeout 0: expected a positive number of seconds, or off"),
        ({"idle_timeout": -5.0}, "idle_timeout -5.0"),
    ],
)
def test_bad_configuration_is_refused_by_name(
    tmp_path: Path, overrides: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        SimulatorConfig(state_dir=tmp_path, **overrides)  # type: ignore[arg-type]
