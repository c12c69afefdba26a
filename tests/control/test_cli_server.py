"""`labgate server`: through Typer's runner, and as real processes serving HTTPS."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.control.database import head_revision
from labgate.control.layout import ca_root_path

FAST = {
    "LABGATE_ARGON2_MEMORY_KIB": "64",
    "LABGATE_ARGON2_TIME_COST": "1",
    "LABGATE_ARGON2_PARALLELISM": "1",
}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    return CliRunner()


def test_init_writes_a_private_one_time_password_and_refuses_twice(
    runner: CliRunner, tmp_path: Path
) -> None:
    data = tmp_path / "srv"
    result = runner.invoke(app, ["server", "init", "--data", str(data)])
    assert result.exit_code == 0, result.output
    password_file = data / "admin-password"
    assert str(password_file) in result.output
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert (data / "server.key").stat().st_mode & 0o777 == 0o600
    assert (data / "signing-keys.json").stat().st_mode & 0o777 == 0o600
    assert (data / "labgate.db").stat().st_mode & 0o777 == 0o600
    assert password_file.read_text().strip() not in result.output
    assert b"ENCRYPTED" in (data / "ca" / "issuing.key").read_bytes()
    again = runner.invoke(app, ["server", "init", "--data", str(data)])
    assert again.exit_code == 1
    assert "already holds a server" in again.output


def test_init_records_the_password_policy(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "srv"
    bad = runner.invoke(app, ["server", "init", "--data", str(data), "--password-policy", "weak"])
    assert bad.exit_code == 1
    assert "expected nist or enhanced" in bad.output
    good = runner.invoke(
        app, ["server", "init", "--data", str(data), "--password-policy", "enhanced"]
    )
    assert good.exit_code == 0, good.output
    config = tomllib.loads((data / "server.toml").read_text())
    assert config["password_policy"] == "enhanced"


def test_migrate_and_rotate_keys(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "srv"
    missing = runner.invoke(app, ["server", "migrate", "--data", str(data)])
    assert missing.exit_code == 1
    assert "holds no server" in missing.output
    assert runner.invoke(app, ["server", "init", "--data", str(data)]).exit_code == 0
    migrated = runner.invoke(app, ["server", "migrate", "--data", str(data)])
    assert migrated.exit_code == 0, migrated.output
    assert f"at revision {head_revision()}" in migrated.output
    before = json.loads((data / "signing-keys.json").read_text())["current"]["kid"]
    rotated = runner.invoke(app, ["server", "rotate-keys", "--data", str(data)])
    assert rotated.exit_code == 0, rotated.output
    assert f"still verifying: {before}" in rotated.output


def test_run_refuses_an_uninitialised_or_outdated_server(runner: CliRunner, tmp_path: Path) -> None:
    empty = runner.invoke(app, ["server", "run", "--data", str(tmp_path / "none")])
    assert empty.exit_code == 1
    assert "labgate server init" in empty.output
    data = tmp_path / "srv"
    assert runner.invoke(app, ["server", "init", "--data", str(data)]).exit_code == 0
    import sqlite3

    with sqlite3.connect(data / "labgate.db") as db:
        db.execute("DELETE FROM alembic_version")
    outdated = runner.invoke(app, ["server", "run", "--data", str(data)])
    assert outdated.exit_code == 1
    assert "labgate server migrate" in outdated.output


def test_placeholder_passphrase_is_refused(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABGATE_KEY_PASSPHRASE", "changethis")
    result = runner.invoke(app, ["server", "init", "--data", str(tmp_path / "srv")])
    assert result.exit_code == 1
    assert "placeholder" in result.output


class Running:
    """A `labgate server run` process and the address it announced."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labgate",
                "server",
                "run",
                "--data",
                str(data),
                "--listen",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read() if self.process.stderr else "no output"
        self.ready = json.loads(line)
        context = ssl.create_default_context(cafile=ca_root_path(data))
        self.http = httpx.Client(base_url=self.ready["url"], verify=context, timeout=30)

    def stop(self) -> int:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def _init(data: Path, env: dict[str, str], database_url: str | None) -> str:
    command = [sys.executable, "-m", "labgate", "server", "init", "--data", str(data)]
    if database_url:
        command += ["--database-url", database_url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return (data / "admin-password").read_text().strip()


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, **FAST}


@pytest.fixture
def servers(tmp_path: Path, env: dict[str, str]) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for server in started:
        server.stop()


def test_run_serves_https_and_announces_its_address(
    tmp_path: Path, env: dict[str, str], servers: list[Running]
) -> None:
    data = tmp_path / "srv"
    _init(data, env, None)
    servers.append(Running(data, env))
    ready = servers[0].ready
    assert ready["event"] == "ready" and ready["host"] == "127.0.0.1" and ready["port"] > 0
    health = servers[0].http.get("/healthz")
    assert health.json() == {"status": "ok", "database": "ok"}
    assert "max-age" in health.headers["strict-transport-security"]
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why.
    assert servers.pop().stop() in (0, -signal.SIGTERM)


def test_two_processes_on_one_postgresql_behave_as_one_server(
    tmp_path: Path, env: dict[str, str], servers: list[Running], database_url: str | None
) -> None:
    if database_url is None:
        pytest.skip("replicas share a PostgreSQL database; SQLite is one process's store")
    data = tmp_path / "srv"
    one_time = _init(data, env, database_url)
    servers.extend([Running(data, env), Running(data, env)])
    a, b = servers[0].http, servers[1].http

    def post(
        http: httpx.Client, path: str, body: dict[str, Any] | None = None, token: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http.post(path, json=body, headers=headers)

    restricted = post(a, "/api/v1/auth/login", {"username": "admin", "password": one_time}).json()
    full = post(
        b,
        "/api/v1/auth/password",
        {"old_password": one_time, "new_password": "Violet staple hammock 7 orbit!"},
        restricted["access_token"],
    ).json()
    # A refresh token used on A cannot mint anything new on B.
    first = post(a, "/api/v1/auth/refresh", {"refresh_token": full["refresh_token"]})
    replay = post(b, "/api/v1/auth/refresh", {"refresh_token": full["refresh_token"]})
    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json()  # the grace answer: the same pair, nothing new
    post(a, "/api/v1/auth/refresh", {"refresh_token": first.json()["refresh_token"]})
    reused = post(b, "/api/v1/auth/refresh", {"refresh_token": full["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"
    # A revocation on one is seen by the other at once.
    credentials = {"username": "admin", "password": "Violet staple hammock 7 orbit!"}
    fresh = post(b, "/api/v1/auth/login", credentials).json()
    me = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert b.get("/api/v1/me", headers=me).status_code == 200
    assert post(a, "/api/v1/auth/logout", token=fresh["access_token"]).status_code == 200
    assert b.get("/api/v1/me", headers=me).status_code == 401


def _lock_admin(data: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """An attacker locks `admin` through the API (lowest threshold); the app and the password."""
    from fastapi.testclient import TestClient

    from labgate.control.http.app import create_app
    from labgate.control.settings import ControlSettings

    monkeypatch.setenv("LABGATE_LOCKOUT_THRESHOLD", "10")
    settings = ControlSettings.load(data)
    client = TestClient(create_app(settings), base_url="https://testserver")
    one_time = (data / "admin-password").read_text().strip()
    for n in range(10):  # from ten addresses, so no per-source delay slows the attack
        with TestClient(client.app, client=(f"203.0.113.{n}", 1)) as attacker:
            attacker.post("/api/v1/auth/login", json={"username": "admin", "password": "x" * 20})
    locked = client.post("/api/v1/auth/login", json={"username": "admin", "password": one_time})
    assert locked.status_code == 423, locked.text
    return client, one_time


def test_operator_unlocks_a_locked_admin(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "srv"
    assert runner.invoke(app, ["server", "init", "--data", str(data)]).exit_code == 0
    client, one_time = _lock_admin(data, monkeypatch)
    unknown = runner.invoke(app, ["server", "unlock", "nobody", "--data", str(data)])
    assert unknown.exit_code == 1 and "no user 'nobody'" in unknown.output
    done = runner.invoke(app, ["server", "unlock", "ADMIN", "--data", str(data)])
    assert done.exit_code == 0, done.output
    assert "unlocked 'admin'" in done.output
    login = client.post("/api/v1/auth/login", json={"username": "admin", "password": one_time})
    assert login.status_code == 200, login.text
    client.close()


def test_operator_resets_a_password_into_a_private_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "srv"
    assert runner.invoke(app, ["server", "init", "--data", str(data)]).exit_code == 0
    client, old = _lock_admin(data, monkeypatch)
    out = tmp_path / "new-admin-password"
    done = runner.invoke(
        app, ["server", "reset-password", "admin", "--data", str(data), "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    new = out.read_text().strip()
    assert str(out) in done.output
    assert new not in done.output and len(new) >= 32
    assert out.stat().st_mode & 0o777 == 0o600
    # The lock is lifted, the old password is gone, the new one may only be changed.
    wrong = client.post("/api/v1/auth/login", json={"username": "admin", "password": old})
    assert wrong.status_code == 401
    tokens = client.post("/api/v1/auth/login", json={"username": "admin", "password": new})
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["password_change_required"] is True
    client.close()


def test_reset_password_as_a_real_process_never_prints_the_password(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data = tmp_path / "srv"
    _init(data, env, None)
    done = subprocess.run(
        [sys.executable, "-m", "labgate", "server", "reset-password", "Admin", "--data", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    written = data / "admin-password"
    password = written.read_text().strip()
    assert str(written) in done.stdout
    assert password not in done.stdout + done.stderr
    assert written.stat().st_mode & 0o777 == 0o600
    missing = subprocess.run(
        [sys.executable, "-m", "labgate", "server", "unlock", "admin", "--data", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "holds no server" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_init_refuses_the_nist_policy_that_secure_pwd_would_override(
    runner: CliRunner, tmp_path: Path
) -> None:
    data = tmp_path / "srv"
    refused = runner.invoke(
        app, ["server", "init", "--data", str(data), "--password-policy", "nist"]
    )
    assert refused.exit_code == 1, refused.output
    assert "--password-policy nist conflicts with [secure] pwd" in refused.output
    assert f"labgate secure --config {data / 'server.toml'} -pwd" in refused.output
    assert not (data / "server.toml").exists()  # nothing was set up half-way
    # The way the message gives: init, then pwd off; the NIST policy is then the one in force.
    assert runner.invoke(app, ["server", "init", "--data", str(data)]).exit_code == 0
    off = runner.invoke(app, ["secure", "--config", str(data / "server.toml"), "-pwd"])
    assert off.exit_code == 0, off.output
    from labgate.control.settings import ControlSettings

    assert ControlSettings.load(data).policy_in_force == "nist"
