"""`[secure]` in the control server, tried from the outside: under `pwd` a stored password that
fails the enhanced policy is forced to change at its next login and logins idle out; under `fw` a
client from outside `client_networks` is cut off at accept, and a listener on every address is
refused."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from labgate.control.http.app import create_app
from labgate.control.http.serving import run_in_thread
from labgate.control.settings import ControlSettings
from labgate.posture.mode import PWD_IDLE_SECONDS, SecureConfig


def _with(settings: ControlSettings, **table: Any) -> ControlSettings:
    return settings.model_copy(update={"secure": SecureConfig.from_table(table)})


def test_pwd_forces_a_change_of_a_stored_password_failing_the_enhanced_policy(
    api: Any, clock: Any
) -> None:
    api.admin_tokens()  # the admin now has api.STRONG_PASSWORD: NIST yes, enhanced no
    secure = _with(api.settings, pwd=True, fw=False, full=False)
    assert api.settings.policy_in_force == "nist" and secure.policy_in_force == "enhanced"
    with TestClient(create_app(secure, clock=clock)) as strict:
        tokens = type(api)(strict, secure).login("admin", api.STRONG_PASSWORD)
        assert tokens["password_change_required"] is True
        me = strict.get("/api/v1/me", headers=api.bearer(tokens["access_token"]))
        assert me.status_code == 403
        # Changing it to another password the enhanced policy refuses does not get out of it.
        weak = strict.post(
            "/api/v1/auth/password",
            headers=api.bearer(tokens["access_token"]),
            json={"old_password": api.STRONG_PASSWORD, "new_password": "another long passphrase"},
        )
        assert weak.status_code in (400, 422), weak.text


def test_pwd_ends_a_login_left_idle(api: Any, clock: Any) -> None:
    secure = _with(api.settings, pwd=True, fw=False, full=False)
    assert secure.user_refresh_in_force == PWD_IDLE_SECONDS < api.settings.user_refresh_seconds
    api.admin_tokens()
    strong = "Violet-staple-hammock-7-orbit"
    api.post(
        "/api/v1/auth/password",
        headers=api.admin(),
        json={"old_password": api.STRONG_PASSWORD, "new_password": strong},
    ).raise_for_status()
    with TestClient(create_app(secure, clock=clock)) as strict:
        client = type(api)(strict, secure)
        tokens = client.login("admin", strong)
        assert tokens["password_change_required"] is False
        clock.advance(PWD_IDLE_SECONDS - 60)  # active within the idle time: refreshed
        tokens = client.refresh(tokens["refresh_token"]).json()
        clock.advance(PWD_IDLE_SECONDS + 1)  # then idle for longer: the login is over
        assert client.refresh(tokens["refresh_token"]).status_code == 401


def _https_from(url: str, root: Path, source: str) -> int | str:
    context = ssl.create_default_context(cafile=str(root))
    transport = httpx.HTTPTransport(verify=context, local_address=source, retries=0)
    try:
        with httpx.Client(transport=transport, timeout=10) as client:
            return client.get(f"{url}/api/v1/public/locations").status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def test_fw_cuts_off_a_client_outside_client_networks(settings: ControlSettings) -> None:
    secure = _with(settings, fw=True, pwd=False, full=False, client_networks=["127.0.0.1/32"])
    with run_in_thread(secure) as running:
        assert isinstance(_https_from(running.url, running.ca_root, "127.0.0.1"), int)
        refused = _https_from(running.url, running.ca_root, "127.0.0.2")
        assert refused in ("ConnectError", "ReadError", "RemoteProtocolError"), refused
        # Not even a TLS alert: the connection is gone before a byte of TLS is read.
        host, port = running.url.removeprefix("https://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), source_address=("127.0.0.2", 0)) as raw:
            raw.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                assert raw.recv(1) == b""


def test_fw_refuses_a_listener_on_every_address(data_dir: Path) -> None:
    with pytest.raises(ValidationError, match="every address, which \\[secure\\] fw refuses"):
        ControlSettings(data_dir=data_dir, listen="0.0.0.0:8443", secure=SecureConfig())
    ControlSettings(
        data_dir=data_dir, listen="0.0.0.0:8443", secure=SecureConfig.from_table({"fw": False})
    )


def test_fw_refuses_a_listen_flag_on_every_address(settings: ControlSettings) -> None:
    from labgate.control.errors import ConfigurationError

    secure = _with(settings, fw=True)
    for listen in ("0.0.0.0:0", "[::]:0"):
        with (
            pytest.raises(ConfigurationError, match=re.escape(f"{listen!r} is every address")),
            run_in_thread(secure, listen=listen),
        ):
            pass


def test_secure_table_is_read_from_server_toml(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        '[secure]\nfull = false\nclient_networks = ["10.0.0.0/8"]\n'
    )
    loaded = ControlSettings.load(tmp_path)
    assert loaded.secure.describe() == "pwd fw" and loaded.secure.present
    assert loaded.secure.admits_source("10.2.3.4") and not loaded.secure.admits_source("127.0.0.1")
    (tmp_path / "server.toml").write_text("")
    assert not ControlSettings.load(tmp_path).secure.present  # an existing install: as it was


def test_a_new_installation_has_every_switch_on(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from labgate.cli.app import app

    data = tmp_path / "srv"
    env = {
        "LABGATE_ARGON2_MEMORY_KIB": "64",
        "LABGATE_ARGON2_TIME_COST": "1",
        "LABGATE_ARGON2_PARALLELISM": "1",
    }
    result = CliRunner().invoke(app, ["server", "init", "--data", str(data)], env=env)
    assert result.exit_code == 0, result.output
    assert "enhanced security: all on" in result.output
    loaded = ControlSettings.load(data)
    assert loaded.secure.present and loaded.secure.describe() == "all"
    assert loaded.policy_in_force == "enhanced"
    shown = CliRunner().invoke(app, ["secure", "--config", str(data / "server.toml")])
    assert shown.output == "all\n"


def test_check_of_a_server_toml(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from labgate.cli.app import app
    from labgate.control.drift import check_server
    from labgate.posture.listening import Listening

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "server.toml"
    path.write_text(f'listen = "127.0.0.1:{port}"\n[secure]\n')
    settings = ControlSettings.load(tmp_path)
    # Listening where configured: every switch holds.
    green = check_server(settings, sockets={Listening(host="127.0.0.1", port=port)})
    assert not green.drift
    assert any("password policy in force: enhanced" in f.text for f in green.verified)
    # Listening on every address too: drift, named.
    both = {Listening(host="127.0.0.1", port=port), Listening(host="::", port=port)}
    drift = check_server(settings, sockets=both).drift
    assert [f.switch for f in drift] == ["fw"] and f"[::]:{port} listens" in drift[0].text
    # And through the command, against this machine's real sockets: nothing listens there.
    result = CliRunner().invoke(app, ["secure", "--check", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert f"DRIFT fw: listen = 127.0.0.1:{port}: nothing listens there" in result.output


def test_secure_table_cannot_claim_to_be_absent(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("[secure]\npresent = false\n")
    with pytest.raises(ValidationError, match="present: unknown option"):
        ControlSettings.load(tmp_path)
