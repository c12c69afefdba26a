"""Bundles from the control server: the real server hands out grants and its CRL; a forged, stale,
misaddressed or expired bundle is refused."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from labgate.auth.keyring import KeyRing
from labgate.auth.tokens import sign_claims
from labgate.gateway.bundles import BUNDLE_TYPE, read_bundle
from labgate.gateway.config import ControlConfig
from labgate.gateway.errors import BundleError
from labgate.scpi.access import AccessLevel

NOW = datetime.now(UTC)


def _control(tmp_path: Path, name: str = "site-1") -> ControlConfig:
    return ControlConfig(
        url="https://127.0.0.1:1", gateway_name=name, server_ca=tmp_path, cache_dir=tmp_path
    )


def _claims(crl_pem: str, **changes: Any) -> dict[str, Any]:
    claims = {
        "iss": "labgate:control",
        "aud": "labgate:gateway:site-1",
        "iat": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(minutes=15)).timestamp()),
        "version": 7,
        "grants": [{"identity": "labgate:user:carol", "instrument": "*", "level": "Controller"}],
        "crl_pem": crl_pem,
    }
    claims.update(changes)
    return claims


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate(now=NOW)


@pytest.fixture
def crl_pem(pki: Any) -> str:
    return str(pki.ca.crl().decode())


def test_a_signed_bundle_is_read(tmp_path: Path, ring: KeyRing, crl_pem: str) -> None:
    token = sign_claims(ring, _claims(crl_pem), typ=BUNDLE_TYPE)
    bundle = read_bundle(
        token, ring.jwks(now=NOW), control=_control(tmp_path), now=NOW, above_version=6
    )
    assert bundle.version == 7
    assert bundle.grants[0].identity == "labgate:user:carol"
    assert bundle.grants[0].level is AccessLevel.CONTROLLER


def test_a_replayed_older_bundle_is_refused(tmp_path: Path, ring: KeyRing, crl_pem: str) -> None:
    token = sign_claims(ring, _claims(crl_pem), typ=BUNDLE_TYPE)
    with pytest.raises(BundleError, match=r"version 7 .* not above 7"):
        read_bundle(token, ring.jwks(now=NOW), control=_control(tmp_path), now=NOW, above_version=7)


def test_a_bundle_for_another_gateway_is_refused(
    tmp_path: Path, ring: KeyRing, crl_pem: str
) -> None:
    token = sign_claims(ring, _claims(crl_pem), typ=BUNDLE_TYPE)
    with pytest.raises(BundleError, match="refused"):
        read_bundle(
            token,
            ring.jwks(now=NOW),
            control=_control(tmp_path, "site-2"),
            now=NOW,
            above_version=0,
        )


def test_a_bundle_signed_by_another_key_is_refused(
    tmp_path: Path, ring: KeyRing, crl_pem: str
) -> None:
    forger = KeyRing.generate(now=NOW)
    token = sign_claims(forger, _claims(crl_pem), typ=BUNDLE_TYPE)
    with pytest.raises(BundleError, match="refused"):
        read_bundle(token, ring.jwks(now=NOW), control=_control(tmp_path), now=NOW, above_version=0)


def test_an_expired_bundle_is_refused(tmp_path: Path, ring: KeyRing, crl_pem: str) -> None:
    old = _claims(crl_pem, exp=int((NOW - timedelta(minutes=5)).timestamp()))
    token = sign_claims(ring, old, typ=BUNDLE_TYPE)
    with pytest.raises(BundleError, match="refused"):
        read_bundle(token, ring.jwks(now=NOW), control=_control(tmp_path), now=NOW, above_version=0)


def test_a_bundle_with_a_bad_grant_is_refused_whole(
    tmp_path: Path, ring: KeyRing, crl_pem: str
) -> None:
    bad = _claims(crl_pem, grants=[{"identity": "alice", "instrument": "*", "level": "Full"}])
    token = sign_claims(ring, bad, typ=BUNDLE_TYPE)
    with pytest.raises(BundleError, match="no labgate: URI"):
        read_bundle(token, ring.jwks(now=NOW), control=_control(tmp_path), now=NOW, above_version=0)


# ---------------------------------------------------------------- with the real control server


@dataclass
class Control:
    url: str
    root: Path
    ca: Any
    add_grant: Any
    remove_grants: Any


@pytest.fixture
def control_server(tmp_path: Path) -> Iterator[Control]:
    import uvicorn

    from labgate.control.database import make_engine, session_factory
    from labgate.control.grants import create_grant, delete_grant, visible_grants
    from labgate.control.http.app import create_app
    from labgate.control.http.serving import uvicorn_config
    from labgate.control.keystore import load_passphrase
    from labgate.control.layout import ca_dir, ca_root_path
    from labgate.control.principals import Principal
    from labgate.control.provisioning import initialise
    from labgate.control.settings import ControlSettings
    from labgate.pki.authority import CertificateAuthority

    fast = {"argon2_memory_kib": 64, "argon2_time_cost": 1, "argon2_parallelism": 1}
    settings = ControlSettings.load(tmp_path / "server", **fast)
    initialise(settings, config={})
    engine = make_engine(settings.resolved_database_url)
    sessions = session_factory(engine)
    admin = Principal(identity="labgate:user:admin", role="admin", jti="test")

    def add_grant(who: str, level: str) -> None:
        with sessions() as session:
            create_grant(session, admin, who=who, instrument="*", level=level, now=NOW)
            session.commit()

    def remove_grants(who: str) -> None:
        with sessions() as session:
            for grant in visible_grants(session, admin):
                if grant.principal == who:
                    delete_grant(session, admin, grant.id, now=NOW)
            session.commit()

    server = uvicorn.Server(uvicorn_config(settings, create_app(settings), listen="127.0.0.1:0"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.02)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    ca = CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=load_passphrase(settings))
    try:
        yield Control(
            url=f"https://127.0.0.1:{port}",
            root=ca_root_path(settings.data_dir),
            ca=ca,
            add_grant=add_grant,
            remove_grants=remove_grants,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        engine.dispose()


def test_grants_and_revocations_from_the_control_server_apply_to_sessions(
    control_server: Control, gateway_factory: Any, pki: Any, raw_client: Any, tmp_path: Path
) -> None:
    from labgate.gateway.reload import refresh_bundle
    from labgate.pki.profiles import Profile

    site = tmp_path / "site"
    site.mkdir()
    control_server.ca.issue(Profile.GATEWAY, "site-1", dns=["qs5-plain"]).write(site / "gw")
    carol = control_server.ca.issue(Profile.CLIENT, "carol")
    carol.write(site / "carol", combined=True)
    control_server.add_grant("labgate:user:carol", "Controller")
    control = f"""
[control]
url = "{control_server.url}"
gateway_name = "site-1"
server_ca = "{control_server.root}"
cache_dir = "{site / "cache"}"
"""
    gateway = gateway_factory(
        grants={},
        tls_files=(site / "gw.crt", site / "gw.key", control_server.root),
        extra_sections=control,
    )
    assert gateway.call(refresh_bundle(gateway.gateway)) is True
    client = raw_client(gateway, pki, "carol", ca=control_server.root, pem=site / "carol.pem")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC Controller") == b"OK 0"
    control_server.ca.revoke(carol.serial, "keyCompromise")
    assert gateway.call(refresh_bundle(gateway.gateway)) is True
    client.sock.settimeout(5)
    assert client.line() == b""  # closed: revoked by the control server's CRL
    assert gateway.gateway.bundle is not None and gateway.gateway.bundle.version >= 2


@pytest.mark.parametrize("withdrawal", ["grant deleted", "labgate ca revoke"])
def test_a_following_gateway_closes_a_withdrawn_session_within_seconds(
    withdrawal: str,
    control_server: Control,
    gateway_factory: Any,
    pki: Any,
    raw_client: Any,
    tmp_path: Path,
) -> None:
    """The long poll: no fetch is asked for; the change reaches the gateway on its own, also
    when it was made with the CA command beside the server rather than through its API."""
    import time

    from labgate.gateway.reload import follow_control
    from labgate.pki.profiles import Profile

    site = tmp_path / "site"
    site.mkdir()
    control_server.ca.issue(Profile.GATEWAY, "site-1", dns=["qs5-plain"]).write(site / "gw")
    carol = control_server.ca.issue(Profile.CLIENT, "carol")
    carol.write(site / "carol", combined=True)
    control_server.add_grant("labgate:user:carol", "Controller")
    control = f"""
[control]
url = "{control_server.url}"
gateway_name = "site-1"
server_ca = "{control_server.root}"
cache_dir = "{site / "cache"}"
"""
    gateway = gateway_factory(
        grants={},
        tls_files=(site / "gw.crt", site / "gw.key", control_server.root),
        extra_sections=control,
    )
    follower = asyncio.run_coroutine_threadsafe(follow_control(gateway.gateway), gateway.loop)
    try:
        deadline = time.monotonic() + 30
        while gateway.gateway.bundle is None:
            assert time.monotonic() < deadline, "the first bundle never came"
            time.sleep(0.05)
        client = raw_client(gateway, pki, "carol", ca=control_server.root, pem=site / "carol.pem")
        assert client.line().startswith(b"READy")
        assert client.ask("0 ACC Controller") == b"OK 0"
        time.sleep(0.5)  # the gateway is waiting on the server now
        started = time.monotonic()
        if withdrawal == "grant deleted":
            control_server.remove_grants("labgate:user:carol")
        else:
            control_server.ca.revoke(carol.serial, "keyCompromise")
        client.sock.settimeout(20)
        assert client.line() == b""  # closed: the grant went, and the gateway heard at once
        assert time.monotonic() - started < 10
    finally:
        follower.cancel()


def test_a_gateway_that_cannot_reach_the_server_backs_off(
    gateway_factory: Any, pki: Any, tmp_path: Path
) -> None:
    import time

    from labgate.gateway.reload import follow_control

    control = f"""
[control]
url = "https://127.0.0.1:1"
gateway_name = "site-1"
server_ca = "{pki.root}"
cache_dir = "{tmp_path / "cache"}"
poll_interval = 60
"""
    gateway = gateway_factory(grants={}, extra_sections=control)
    attempts: list[float] = []
    record = gateway.gateway.record

    def counting(event: Any) -> Any:
        if event.get("event") == "bundle_refused":
            attempts.append(time.monotonic())
        return record(event)

    gateway.gateway.record = counting  # type: ignore[method-assign]
    follower = asyncio.run_coroutine_threadsafe(follow_control(gateway.gateway), gateway.loop)
    try:
        time.sleep(3.5)
    finally:
        follower.cancel()
    # Attempts at 0, 1, 3 seconds (doubling), not a tight loop.
    assert 2 <= len(attempts) <= 4, attempts
