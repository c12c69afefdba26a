"""The configuration file: defaults, and every unsafe or conflicting choice refused by name."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from labgate.gateway.config import (
    GATEWAY_OPTIONS,
    ControlConfig,
    GatewayConfig,
    Grant,
    InstrumentConfig,
    UpstreamScheme,
    load_config,
    read_secret,
)
from labgate.gateway.errors import ConfigError, SecretFileError
from labgate.posture.mode import SecureConfig
from labgate.scpi.access import AccessLevel

PIN = "sha256/" + "A" * 43 + "="


def _files(tmp_path: Path) -> None:
    for name in ("gateway.crt", "root.crt", "ca.crl"):
        (tmp_path / name).write_text("placeholder")
    key = tmp_path / "gateway.key"
    key.write_text("placeholder")
    key.chmod(0o600)
    secret = tmp_path / "qs.secret"
    secret.write_text("hunter2-instrument\n")
    secret.chmod(0o600)


def _write(tmp_path: Path, body: str) -> Path:
    _files(tmp_path)
    path = tmp_path / "gateway.toml"
    path.write_text(body)
    return path


BASE = """
[gateway]
cert = "gateway.crt"
key = "gateway.key"
client_ca = "root.crt"
audit_log = "audit.jsonl"
"""

INSTRUMENT = """
[[instrument]]
name = "qs5-bench3"
upstream = "plain://127.0.0.1:7000"
"""


def _load(tmp_path: Path, body: str) -> GatewayConfig:
    return load_config(_write(tmp_path, body))


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path, BASE + INSTRUMENT)
    instrument = config.instruments[0]
    assert str(instrument.listen) == "127.0.0.1:7443"
    assert instrument.upstream.scheme is UpstreamScheme.PLAIN
    assert instrument.max_upstream == 8
    assert str(config.metrics_listen) == "127.0.0.1:9464"
    assert config.unsafe_allow_full is False and config.unsafe_listen is False
    assert config.crl is None and config.grants == ()
    assert config.cert == tmp_path.resolve() / "gateway.crt"  # relative to the config file
    assert config.limits.handshake_timeout == 10.0
    assert config.limits.framing.max_line == 64 * 1024


def test_full_example_of_the_issue_is_read(tmp_path: Path) -> None:
    body = (
        BASE
        + 'crl = "ca.crl"\nmetrics_listen = "127.0.0.1:0"\n'
        + f"""
[[instrument]]
name = "qs5-bench3"
listen = "127.0.0.1:0"
upstream = "sslv3://127.0.0.1:7443"
upstream_pin = "{PIN}"
password_file = "qs.secret"
max_upstream = 4

[[grant]]
identity = "labgate:user:alice"
instrument = "qs5-bench3"
level = "controller"

[[grant]]
identity = "labgate:user:bob"
instrument = "*"
level = "Observer"
"""
    )
    config = _load(tmp_path, body)
    assert config.instruments[0].upstream.scheme is UpstreamScheme.SSLV3
    assert config.instruments[0].upstream_pin == PIN
    assert config.instruments[0].max_upstream == 4
    assert [g.level for g in config.grants] == [AccessLevel.CONTROLLER, AccessLevel.OBSERVER]
    assert config.metrics_listen is not None and config.metrics_listen.port == 0


def test_non_loopback_listen_is_refused_without_unsafe_listen(tmp_path: Path) -> None:
    body = BASE + INSTRUMENT + 'listen = "0.0.0.0:7443"\n'
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.listen.*unsafe_listen"):
        _load(tmp_path, body)


def test_unsafe_listen_allows_a_non_loopback_address(tmp_path: Path) -> None:
    body = BASE + "unsafe_listen = true\n" + INSTRUMENT + 'listen = "0.0.0.0:7443"\n'
    assert str(_load(tmp_path, body).instruments[0].listen) == "0.0.0.0:7443"


def test_non_loopback_metrics_is_refused(tmp_path: Path) -> None:
    body = BASE + 'metrics_listen = "192.0.2.1:9464"\n' + INSTRUMENT
    with pytest.raises(ConfigError, match=r"gateway\.metrics_listen"):
        _load(tmp_path, body)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.alow_full: unknown option"):
        _load(tmp_path, BASE + "alow_full = true\n" + INSTRUMENT)


def test_full_grant_needs_unsafe_allow_full(tmp_path: Path) -> None:
    grant = '[[grant]]\nidentity = "labgate:user:root"\ninstrument = "*"\nlevel = "Full"\n'
    with pytest.raises(ConfigError, match=r"grant\[0\]\.level.*gateway\.unsafe_allow_full"):
        _load(tmp_path, BASE + INSTRUMENT + grant)
    config = _load(tmp_path, BASE + "unsafe_allow_full = true\n" + INSTRUMENT + grant)
    assert config.grants[0].level is AccessLevel.FULL


def test_grant_for_unknown_instrument_is_refused(tmp_path: Path) -> None:
    grant = '[[grant]]\nidentity = "labgate:user:a"\ninstrument = "nope"\nlevel = "Observer"\n'
    with pytest.raises(ConfigError, match=r"grant\[0\]\.instrument.*'nope'"):
        _load(tmp_path, BASE + INSTRUMENT + grant)


def test_bad_level_is_named(tmp_path: Path) -> None:
    grant = '[[grant]]\nidentity = "labgate:user:a"\ninstrument = "*"\nlevel = "root"\n'
    with pytest.raises(ConfigError, match=r"grant\[0\]\.level.*'root'"):
        _load(tmp_path, BASE + INSTRUMENT + grant)


def test_tls_upstream_needs_a_pin_and_plain_refuses_one(tmp_path: Path) -> None:
    tls = BASE + '[[instrument]]\nname = "a"\nupstream = "tls://127.0.0.1:7443"\n'
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.upstream_pin is required"):
        _load(tmp_path, tls)
    plain = BASE + INSTRUMENT + f'upstream_pin = "{PIN}"\n'
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.upstream_pin: a plain"):
        _load(tmp_path, plain)


@pytest.mark.parametrize("pin", ["sha1/AAAA", "sha256/not base64!", "sha256/AAAA"])
def test_malformed_pin_is_refused(tmp_path: Path, pin: str) -> None:
    body = (
        BASE
        + f'[[instrument]]\nname = "a"\nupstream = "tls://127.0.0.1:1"\nupstream_pin = "{pin}"\n'
    )
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.upstream_pin"):
        _load(tmp_path, body)


def test_unknown_upstream_scheme_is_refused(tmp_path: Path) -> None:
    body = BASE + '[[instrument]]\nname = "a"\nupstream = "http://127.0.0.1:80"\n'
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.upstream: unknown scheme 'http'"):
        _load(tmp_path, body)


def test_duplicate_instrument_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"instrument\[1\]\.name.*twice"):
        _load(tmp_path, BASE + INSTRUMENT + INSTRUMENT)


def test_readable_password_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + INSTRUMENT + 'password_file = "qs.secret"\n')
    (tmp_path / "qs.secret").chmod(0o644)
    with pytest.raises(SecretFileError, match=r"password_file.*0644.*0600") as caught:
        load_config(path)
    assert "hunter2" not in str(caught.value)


def test_password_file_is_read_stripped(tmp_path: Path) -> None:
    _files(tmp_path)
    assert read_secret(tmp_path / "qs.secret", "k") == b"hunter2-instrument"


def test_missing_password_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError, match=r"instrument\[0\]\.password_file.*nope"):
        _load(tmp_path, BASE + INSTRUMENT + 'password_file = "nope"\n')


def test_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + INSTRUMENT)
    os.chmod(tmp_path / "gateway.key", 0o640)
    with pytest.raises(SecretFileError, match=r"gateway\.key.*0640"):
        load_config(path)


def test_missing_certificate_file_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + INSTRUMENT)
    (tmp_path / "root.crt").unlink()
    with pytest.raises(ConfigError, match=r"gateway\.client_ca: .*root\.crt does not exist"):
        load_config(path)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, "[gateway\n")


def test_zero_limits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.max_upstream"):
        _load(tmp_path, BASE + INSTRUMENT + "max_upstream = 0\n")
    with pytest.raises(ConfigError, match=r"gateway\.idle_timeout"):
        _load(tmp_path, BASE + "idle_timeout = -1\n" + INSTRUMENT)


def test_ipv6_loopback_is_loopback(tmp_path: Path) -> None:
    config = _load(tmp_path, BASE + INSTRUMENT + 'listen = "[::1]:0"\n')
    assert config.instruments[0].listen.is_loopback
    assert str(config.instruments[0].listen) == "[::1]:0"


def test_empty_metrics_listen_turns_metrics_off(tmp_path: Path) -> None:
    assert _load(tmp_path, BASE + 'metrics_listen = ""\n' + INSTRUMENT).metrics_listen is None


def test_warm_connections_default_to_two_within_max_upstream(tmp_path: Path) -> None:
    assert _load(tmp_path, BASE + INSTRUMENT).instruments[0].upstream_idle == 2
    small = _load(tmp_path, BASE + INSTRUMENT + "max_upstream = 1\n").instruments[0]
    assert small.upstream_idle == 1  # never more warm connections than slots
    off = _load(tmp_path, BASE + INSTRUMENT + "upstream_idle = 0\n").instruments[0]
    assert off.upstream_idle == 0


def test_more_warm_connections_than_slots_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"upstream_idle: 5 .* max_upstream=4"):
        _load(tmp_path, BASE + INSTRUMENT + "max_upstream = 4\nupstream_idle = 5\n")
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.upstream_idle: .* at least 0"):
        _load(tmp_path, BASE + INSTRUMENT + "upstream_idle = -1\n")
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.upstream_idle_timeout"):
        _load(tmp_path, BASE + INSTRUMENT + "upstream_idle_timeout = 0\n")


def test_the_old_allow_full_is_refused_naming_the_new_name(tmp_path: Path) -> None:
    grant = '[[grant]]\nidentity = "labgate:user:root"\ninstrument = "*"\nlevel = "Full"\n'
    with pytest.raises(ConfigError, match=r"gateway\.allow_full: renamed to unsafe_allow_full"):
        _load(tmp_path, BASE + "allow_full = true\n" + INSTRUMENT + grant)
    path = _write(tmp_path, BASE + INSTRUMENT)
    with pytest.raises(ConfigError, match=r"LABGATE_GATEWAY_ALLOW_FULL: renamed to unsafe_allow"):
        load_config(path, environ={"LABGATE_GATEWAY_ALLOW_FULL": "true"})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + "max_connections = 100\n" + INSTRUMENT)
    environ = {
        "LABGATE_GATEWAY_AUDIT_LOG": "logs/elsewhere.jsonl",  # relative to the config's directory
        "LABGATE_GATEWAY_MAX_CONNECTIONS": "7",
        "LABGATE_GATEWAY_IDLE_TIMEOUT": "12.5",
        "LABGATE_GATEWAY_UNSAFE_LISTEN": "true",
        "LABGATE_GATEWAY_METRICS_LISTEN": "",
        "PATH": "/usr/bin",  # other variables are none of the gateway's business
    }
    config = load_config(path, environ=environ)
    assert config.audit_log == tmp_path.resolve() / "logs" / "elsewhere.jsonl"
    assert config.max_connections == 7 and config.limits.max_connections == 7
    assert config.limits.idle_timeout == 12.5
    assert config.unsafe_listen is True
    assert config.metrics_listen is None
    assert load_config(path, environ={}).max_connections == 100  # the file's value otherwise


def test_environment_reaches_into_the_control_table(tmp_path: Path) -> None:
    control = '[control]\nurl = "https://127.0.0.1:8443"\ngateway_name = "site-1"\n'
    control += 'server_ca = "root.crt"\n'
    path = _write(tmp_path, BASE + INSTRUMENT + control)
    config = load_config(path, environ={"LABGATE_GATEWAY_CONTROL__POLL_INTERVAL": "30"})
    assert config.control is not None
    assert config.control.poll_interval == 30.0
    assert config.control.gateway_name == "site-1"  # the rest of the table is the file's
    assert config.control.cache_dir == tmp_path.resolve() / "control-cache"


def test_a_bad_environment_value_names_the_option_and_the_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + INSTRUMENT)
    with pytest.raises(
        ConfigError,
        match=r"gateway\.max_connections: expected a whole number of at least 1, got '0' "
        r"\(from LABGATE_GATEWAY_MAX_CONNECTIONS\)",
    ):
        load_config(path, environ={"LABGATE_GATEWAY_MAX_CONNECTIONS": "0"})
    with pytest.raises(ConfigError, match=r"gateway\.unsafe_listen: expected true or false"):
        load_config(path, environ={"LABGATE_GATEWAY_UNSAFE_LISTEN": "maybe"})
    with pytest.raises(ConfigError, match=r"gateway\.metrics_listen: .*unsafe_listen = true"):
        # An override is checked with everything else: it cannot open what the file keeps shut.
        load_config(path, environ={"LABGATE_GATEWAY_METRICS_LISTEN": "0.0.0.0:9464"})


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("LABGATE_GATEWAY_ALOW_FULL", r"LABGATE_GATEWAY_ALOW_FULL: unknown option"),
        ("LABGATE_GATEWAY_CONTROL__URLL", r"LABGATE_GATEWAY_CONTROL__URLL: unknown option"),
        ("LABGATE_GATEWAY_GRANT", r"\[\[grant\]\] tables come from the configuration file only"),
        ("labgate_gateway_instrument__0__name", r"\[\[instrument\]\] tables come from the conf"),
    ],
)
def test_unknown_environment_variables_are_refused(
    tmp_path: Path, variable: str, expected: str
) -> None:
    path = _write(tmp_path, BASE + INSTRUMENT)
    with pytest.raises(ConfigError, match=expected):
        load_config(path, environ={variable: "x"})


def test_the_process_environment_is_read_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, BASE + INSTRUMENT)
    monkeypatch.setenv("LABGATE_GATEWAY_HANDSHAKE_TIMEOUT", "3")
    assert load_config(path).limits.handshake_timeout == 3.0


def test_unknown_table_and_misplaced_tables_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^instruments: unknown table"):
        _load(tmp_path, BASE + INSTRUMENT + "[instruments]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"gateway\.grant: unknown option"):
        _load(tmp_path, BASE + "grant = []\n" + INSTRUMENT)
    with pytest.raises(ConfigError, match=r"instrument\[0\]\.max_upstrem: unknown option"):
        _load(tmp_path, BASE + INSTRUMENT + "max_upstrem = 3\n")


def test_a_boolean_is_not_a_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.max_connections: expected a number, got Tr"):
        _load(tmp_path, BASE + "max_connections = true\n" + INSTRUMENT)


def _readme_tables() -> dict[str, dict[str, str]]:
    """The README's gateway configuration tables: option -> default cell, by table heading."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Gateway (`labgate gateway`)", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, dict[str, str]] = {}
    current = ""
    for line in section.splitlines():
        for heading in ("[gateway]", "[[instrument]]", "[[grant]]", "[control]", "[secure]"):
            if line.startswith(f"`{heading}`"):
                current = heading
                tables[current] = {}
        row = re.match(r"^\| `(\w+)` \| (.*?) \|", line)
        if current and row:
            tables[current][row.group(1)] = row.group(2)
    return tables


def _documented(cell: str, default: object) -> bool:
    text = cell.strip("`").split("`")[0].strip('"')
    if isinstance(default, bool):
        return text == str(default).lower()
    if isinstance(default, int | float):
        return float(text) == float(default)
    return text == str(default)


def test_every_option_is_in_the_readme_with_its_default() -> None:
    tables = _readme_tables()
    models = {
        "[gateway]": (GatewayConfig, set(GATEWAY_OPTIONS)),
        "[[instrument]]": (InstrumentConfig, set(InstrumentConfig.model_fields)),
        "[[grant]]": (Grant, set(Grant.model_fields)),
        "[control]": (ControlConfig, set(ControlConfig.model_fields)),
        "[secure]": (SecureConfig, set(SecureConfig.model_fields) - {"present"}),
    }
    for heading, (model, options) in models.items():
        assert set(tables[heading]) == options, heading
        for name in options:
            info = model.model_fields[name]
            if info.is_required() or info.default is None:
                continue
            if isinstance(info.default, bool | int | float | str | Path):
                cell = tables[heading][name]
                assert _documented(cell, info.default), f"{heading} {name}: {cell}"
