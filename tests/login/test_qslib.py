"""From a password to qslib in two commands: `labgate login` and `labgate cert get` against the
real `labgate server`, then the real qslib client through a real `labgate gateway` that takes its
grants from that server (`[control]`), in front of `labgate sim`."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.demo.test_offboarding import connected
from tests.login.conftest import NEW_PASSWORD
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.demo.stack import OPERATOR, RunningDemo, running
from labgate.login.store import CONFIG_DIR_ENV

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running(tmp_path_factory.mktemp("login-qslib")) as stack:
        yield stack


def one_time_password_for(demo: RunningDemo, username: str) -> str:
    """The administrator makes the account, as the README has it; its one-time password."""
    context = ssl.create_default_context(cafile=str(demo.root_ca))
    with httpx.Client(base_url=str(demo.server["url"]), verify=context, timeout=30) as api:
        login = api.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": demo.admin_password.read_text().strip()},
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        made = api.post("/api/v1/users", headers=headers, json={"username": username})
        assert made.status_code == 201, made.text
        return str(made.json()["one_time_password"])


def test_two_commands_give_a_file_qslib_connects_with_through_the_gateway(
    demo: RunningDemo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))
    one_time = one_time_password_for(demo, OPERATOR)  # the demo grants it Controller
    runner = CliRunner()
    logged_in = runner.invoke(
        app,
        ["login", str(demo.server["url"]), "--server-ca", str(demo.root_ca), "--user", OPERATOR],
        input=f"{one_time}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n",
    )
    assert logged_in.exit_code == 0, logged_in.stderr
    pem = tmp_path / "me.pem"
    got = runner.invoke(app, ["cert", "get", "--out", str(pem)])
    assert got.exit_code == 0, got.stderr
    audited = len(demo.audit_log.read_bytes()) if demo.audit_log.exists() else 0
    # qslib.Machine(host, port=port, ssl=True, client_certificate_path=str(pem),
    # server_ca_file=root, tls_server_name=INSTRUMENT), retried until the gateway has the grant.
    session = connected(demo, pem)
    try:
        assert session.run_command("DRAW?") in ("Open", "Closed")
    finally:
        session.disconnect()
    # The gateway's audit log names the person the certificate was made for.
    assert f"labgate:user:{OPERATOR}".encode() in demo.audit_log.read_bytes()[audited:]
