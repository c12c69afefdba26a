"""Fixtures for the control server: a real data directory, a real database, a real app.

Every test that takes `settings` runs once on SQLite and once on PostgreSQL when
LABGATE_TEST_POSTGRES_URL is set. PostgreSQL tests get a database made for this test session
(dropped at the end) and a schema of their own inside it (dropped after the test).
"""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from labgate.control import keystore
from labgate.control.http.app import create_app
from labgate.control.http.serving import run_in_thread
from labgate.control.layout import ADMIN_PASSWORD_FILE, ca_dir, ca_root_path
from labgate.control.provisioning import initialise
from labgate.control.settings import ControlSettings, normalise_database_url
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile

# Cheap argon2 for tests; the production parameters are tested once, in test_accounts.py.
FAST_ARGON2 = {"argon2_memory_kib": 64, "argon2_time_cost": 1, "argon2_parallelism": 1}
STRONG_PASSWORD = "violet staple hammock orbit quietly"


class Clock:
    """Real time plus an offset the test can move forward; or, once frozen, a time that moves
    only when the test moves it (for windows of a second or so that a loaded machine, running
    several tests at once, would otherwise let pass between two requests)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        if self.frozen is not None:
            return self.frozen + self.offset
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def freeze(self) -> None:
        self.frozen = datetime.now(UTC)


def _postgres_admin_url() -> str | None:
    url = os.environ.get("LABGATE_TEST_POSTGRES_URL")
    return normalise_database_url(url) if url else None


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test session's own on the PostgreSQL server; dropped afterwards."""
    admin_url = _postgres_admin_url()
    if admin_url is None:
        pytest.skip("LABGATE_TEST_POSTGRES_URL is not set")
    name = "labgate_test_" + secrets.token_hex(4)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (SQLite in the data directory) or a fresh PostgreSQL schema for this test."""
    if request.param == "sqlite":
        yield None
        return
    base = request.getfixturevalue("postgres_database")
    schema = "t_" + secrets.token_hex(6)
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield str(sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}))
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "server"


@pytest.fixture
def settings(data_dir: Path, database_url: str | None) -> ControlSettings:
    """An initialised server's settings (database, CA, keys, admin user all real)."""
    settings = ControlSettings.load(data_dir, database_url=database_url, **FAST_ARGON2)
    initialise(settings, config={"database_url": database_url})
    return settings


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(settings: ControlSettings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), base_url="https://testserver") as client:
        yield client


class Api:
    """An HTTP client (TestClient or httpx against a live server) with the steps tests repeat."""

    STRONG_PASSWORD = STRONG_PASSWORD

    def __init__(self, http: Any, settings: ControlSettings) -> None:
        self.http = http
        self.settings = settings

    def __getattr__(self, name: str) -> Any:  # get, post, put, delete, request
        return getattr(self.http, name)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin_password(self) -> str:
        return (self.settings.data_dir / ADMIN_PASSWORD_FILE).read_text().strip()

    def login(self, username: str, password: str) -> dict[str, Any]:
        response = self.http.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def login_fully(self, username: str, one_time: str) -> dict[str, Any]:
        """Log in with a one-time password and change it; the full session's tokens."""
        restricted = self.login(username, one_time)
        assert restricted["password_change_required"] is True
        response = self.http.post(
            "/api/v1/auth/password",
            headers=self.bearer(restricted["access_token"]),
            json={"old_password": one_time, "new_password": STRONG_PASSWORD},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def admin_tokens(self) -> dict[str, Any]:
        """A full admin session: the first call changes the one-time password, later ones log in."""
        if getattr(self, "_admin_ready", False):
            return self.login("admin", STRONG_PASSWORD)
        tokens = self.login_fully("admin", self.admin_password)
        self._admin_ready = True
        return tokens

    def admin(self) -> dict[str, str]:
        return self.bearer(self.admin_tokens()["access_token"])

    def create_user(self, admin: dict[str, str], username: str, role: str) -> dict[str, str]:
        """A new user with a full session; its Authorization headers."""
        response = self.http.post(
            "/api/v1/users", headers=admin, json={"username": username, "role": role}
        )
        assert response.status_code == 201, response.text
        one_time = response.json()["one_time_password"]
        return self.bearer(self.login_fully(username, one_time)["access_token"])

    def create_device(self, owner: dict[str, str], name: str, **extra: Any) -> dict[str, Any]:
        response = self.http.post("/api/v1/devices", headers=owner, json={"name": name, **extra})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def refresh(self, token: str, **kwargs: Any) -> Any:
        return self.http.post("/api/v1/auth/refresh", json={"refresh_token": token}, **kwargs)


@pytest.fixture
def api(client: TestClient, settings: ControlSettings) -> Api:
    return Api(client, settings)


@dataclass
class LiveServer:
    url: str
    settings: ControlSettings

    @property
    def root(self) -> Path:
        return ca_root_path(self.settings.data_dir)

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("verify", ssl.create_default_context(cafile=self.root))
        # httpx's own default is 5 s: a request on a machine running several tests at once
        # (a login's argon2, a database write) was seen to take longer. Tests of a deadline pass
        # their own timeout.
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, **kwargs)

    def api(self, **kwargs: Any) -> Api:
        return Api(self.client(**kwargs), self.settings)


@pytest.fixture
def live_server(settings: ControlSettings, clock: Clock) -> Iterator[LiveServer]:
    """`labgate server run`'s setup (TLS, peer certificates) on a thread, on a free port."""
    with run_in_thread(settings, clock=clock) as running:
        yield LiveServer(url=running.url, settings=settings)


def _make_csr(
    common_name: str, *, uris: tuple[str, ...] = (), dns: tuple[str, ...] = ()
) -> tuple[bytes, str]:
    """A new EC key (PEM) and a CSR for it naming `common_name` and any SANs asked for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def tls_identity(tmp: Path, name: str, chain_pem: bytes | str, key_pem: bytes) -> tuple[Path, Path]:
    """Write a certificate chain and its key to files an ssl context can load."""
    chain = tmp / f"{name}.crt"
    key = tmp / f"{name}.key"
    chain.write_bytes(chain_pem.encode() if isinstance(chain_pem, str) else chain_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    return chain, key


@pytest.fixture
def mtls(live_server: LiveServer, tmp_path: Path) -> Any:
    """`mtls(name, chain_pem, key_pem)`: an Api on the live server presenting that certificate."""

    def connect(name: str, chain_pem: bytes | str, key_pem: bytes) -> Api:
        chain, key = tls_identity(tmp_path, name, chain_pem, key_pem)
        context = ssl.create_default_context(cafile=live_server.root)
        context.load_cert_chain(chain, key)
        return live_server.api(verify=context)

    return connect


@pytest.fixture
def make_csr() -> Any:
    return _make_csr


@pytest.fixture
def gateway_identity(settings: ControlSettings) -> Any:
    """Issue a certificate with the CA on disk, as `labgate ca issue` would."""
    passphrase = keystore.load_passphrase(settings)

    def issue(profile: Profile, name: str) -> tuple[bytes, bytes, int]:
        with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca:
            issued = ca.issue(
                profile, name, dns=["localhost"] if profile is Profile.GATEWAY else []
            )
        assert issued.key_pem is not None
        return issued.chain_pem, issued.key_pem, issued.serial

    return issue
