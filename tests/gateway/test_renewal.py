"""A gateway with `[control]` renews its own server and control client certificates from the real
control server while real qslib sessions run through it; none drops, new handshakes get the new
certificate. And what must not happen: a revoked gateway renewing, a customer's certificate
replaced, a tight retry loop while the server is away."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from labgate.control.keystore import load_passphrase
from labgate.control.layout import ca_dir, ca_root_path
from labgate.control.provisioning import initialise
from labgate.control.settings import ControlSettings
from labgate.gateway.renewal import Renewable, Renewals, is_ours, renewables
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile

FAST_ARGON2 = {"argon2_memory_kib": 64, "argon2_time_cost": 1, "argon2_parallelism": 1}
INSTRUMENT_NAMES = ["qs5-plain", "qs5-tls", "qs5-legacy", "localhost"]


@dataclass
class ControlServer:
    """`labgate server run` as a child process (qslib holds the GIL while it waits, so nothing it
    depends on may run on a thread of the test process), and its CA opened beside it."""

    url: str
    root: Path
    settings: ControlSettings
    process: subprocess.Popen[str]

    def ca(self) -> CertificateAuthority:
        return CertificateAuthority.open(
            ca_dir(self.settings.data_dir), passphrase=load_passphrase(self.settings)
        )

    def grant(self, identity: str, level: str) -> None:
        from labgate.control.database import make_engine, session_factory
        from labgate.control.grants import create_grant
        from labgate.control.principals import Principal

        engine = make_engine(self.settings.resolved_database_url)
        admin = Principal(identity="labgate:user:admin", role="admin", jti="test")
        try:
            with session_factory(engine)() as session:
                create_grant(
                    session, admin, who=identity, instrument="*", level=level, now=datetime.now(UTC)
                )
                session.commit()
        finally:
            engine.dispose()


@pytest.fixture
def control_server(tmp_path: Path) -> Iterator[ControlServer]:
    data = tmp_path / "server"
    settings = ControlSettings.load(data, **FAST_ARGON2)
    # Certificates renewed for gateways last an hour: the test sees one renewal of each.
    initialise(settings, config={**FAST_ARGON2, "gateway_certificate_seconds": 3600})
    process = subprocess.Popen(
        [sys.executable, "-m", "labgate", "server", "run", "--data", str(data),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"the control server exited with {process.wait(10)}"
    try:
        yield ControlServer(
            url=json.loads(line)["url"],
            root=ca_root_path(data),
            settings=ControlSettings.load(data),
            process=process,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    directory: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path
    users: dict[str, Path]  # name -> combined PEM (chain and key), as qslib wants it
    control: str  # the [control] table


def _site(control: ControlServer, directory: Path, *, lifetime: timedelta) -> Site:
    """Gateway site-1's certificates as an operator issues them (`labgate ca issue`), with a
    short lifetime, and two people's client certificates, all from the control server's CA."""
    directory.mkdir(exist_ok=True)
    with control.ca() as ca:
        served = ca.issue(
            Profile.GATEWAY, "site-1", dns=INSTRUMENT_NAMES, ips=["127.0.0.1"], lifetime=lifetime
        )
        ca.handed_out(served)
        served.write(directory / "gw")
        presented = ca.issue(Profile.GATEWAY, "site-1", lifetime=lifetime + timedelta(seconds=2))
        ca.handed_out(presented)
        presented.write(directory / "towards-control")
        users = {}
        for name in ("carol", "dave"):
            person = ca.issue(Profile.CLIENT, name)
            ca.handed_out(person)
            person.write(directory / name, combined=True)
            users[name] = directory / f"{name}.pem"
    table = f"""
[control]
url = "{control.url}"
gateway_name = "site-1"
server_ca = "{control.root}"
cert = "{directory / "towards-control.crt"}"
key = "{directory / "towards-control.key"}"
cache_dir = "{directory / "cache"}"
renew_retry_max = 2
"""
    return Site(
        directory=directory,
        server_crt=directory / "gw.crt",
        server_key=directory / "gw.key",
        client_crt=directory / "towards-control.crt",
        client_key=directory / "towards-control.key",
        users=users,
        control=table,
    )


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _served_serial(address: tuple[str, int], site: Site, root: Path) -> int:
    """The serial a brand-new TLS handshake with the gateway is given."""
    context = ssl.create_default_context(cafile=root)
    context.load_cert_chain(site.users["carol"])
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="qs5-plain") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _machine(address: tuple[str, int], pem: Path, root: Path) -> Any:
    from qslib import Machine

    host, port = address
    return Machine(
        host,
        port=port,
        ssl=True,
        client_certificate_path=str(pem),
        server_ca_file=str(root),
        tls_server_name="qs5-plain",
        max_access_level="Controller",
    )


def _audit(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "audit.jsonl").read_text().splitlines()]


# Slow: real certificates of 14 and 16 seconds have to reach 2/3 of their lives, with two
# servers and a simulator as processes.
@pytest.mark.slow
def test_a_gateway_renews_both_certificates_while_two_qslib_sessions_run_and_none_drops(
    control_server: ControlServer,
    simulator: Any,
    pki: Any,
    config_writer: Callable[..., Path],
    gateway_process_factory: Any,
    tmp_path: Path,
) -> None:
    site = _site(control_server, tmp_path / "site", lifetime=timedelta(seconds=14))
    control_server.grant("labgate:user:carol", "Controller")
    control_server.grant("labgate:user:dave", "Observer")
    old_server, old_client = _serial(site.server_crt), _serial(site.client_crt)
    old_key = site.server_key.read_bytes()
    gateway = gateway_process_factory(
        grants={},
        tls_files=(site.server_crt, site.server_key, control_server.root),
        extra_sections=site.control,
    )
    address, root = gateway.address("qs5-plain"), control_server.root
    assert _served_serial(address, site, root) == old_server
    with (
        _machine(address, site.users["carol"], root) as carol,
        _machine(address, site.users["dave"], root) as dave,
    ):
        carol_connection, dave_connection = carol.connection, dave.connection
        deadline = time.monotonic() + 45
        while _serial(site.server_crt) == old_server or _serial(site.client_crt) == old_client:
            assert time.monotonic() < deadline, "no renewal within 45 s"
            assert carol.machine_status().drawer in ("Open", "Closed")  # both sessions busy
            assert dave.run_status().name is not None
            time.sleep(0.3)
        new_server = _serial(site.server_crt)
        while _served_serial(address, site, root) != new_server:  # the watcher's reload
            assert time.monotonic() < deadline, "the new certificate was not served"
            time.sleep(0.1)
        # The sessions opened before the renewal go on, on their first connections.
        assert carol.machine_status().drawer in ("Open", "Closed")
        assert dave.run_status().name is not None
        assert carol.connection is carol_connection and dave.connection is dave_connection
        with _machine(address, site.users["dave"], root) as newcomer:  # a new one trusts it too
            assert newcomer.run_status().name is not None
    records = _audit(gateway.directory)
    for _ in range(100):  # the sessions' ends, written as the clients went
        if sum(r.get("event") == "disconnect" for r in records) >= 4:
            break
        time.sleep(0.05)
        records = _audit(gateway.directory)
    renewed = {r["purpose"]: r for r in records if r.get("event") == "certificate_renewed"}
    assert renewed["server"]["previous"] == format(old_server, "x")
    assert renewed["server"]["serial"] == format(new_server, "x")
    assert renewed["client"]["previous"] == format(old_client, "x")
    # Carol's and Dave's sessions (the second and third to connect, after the first raw
    # handshake) ended only when their clients closed them, after both renewals.
    connects = [r for r in records if r.get("event") == "connect"]
    kept = {connects[1]["conn"], connects[2]["conn"]}
    assert {connects[1]["identity"], connects[2]["identity"]} == {
        "labgate:user:carol",
        "labgate:user:dave",
    }
    ends = {r["conn"]: records.index(r) for r in records if r.get("event") == "disconnect"}
    assert all(ends[conn] > records.index(r) for conn in kept for r in renewed.values())
    # A new key each time, private to the gateway.
    assert site.server_key.read_bytes() != old_key
    assert site.server_key.stat().st_mode & 0o777 == 0o600
    assert site.client_key.stat().st_mode & 0o777 == 0o600
    lifetime = x509.load_pem_x509_certificate(site.server_crt.read_bytes())
    assert lifetime.not_valid_after_utc - lifetime.not_valid_before_utc > timedelta(minutes=59)


# ------------------------------------------------------------------ in one process, no qslib


@pytest.fixture
def threaded_control(tmp_path: Path) -> Iterator[Any]:
    from labgate.control.http.serving import run_in_thread

    settings = ControlSettings.load(tmp_path / "server", **FAST_ARGON2)
    initialise(settings, config={})
    with run_in_thread(settings) as running:
        yield ControlServer(
            url=running.url,
            root=running.ca_root,
            settings=settings,
            process=None,  # type: ignore[arg-type]
        )


def _renewals(gateway: Any) -> Renewals:
    return Renewals(gateway.gateway)


def test_a_revoked_gateway_cannot_renew_and_keeps_its_files(
    threaded_control: ControlServer, gateway_factory: Any, tmp_path: Path
) -> None:
    site = _site(threaded_control, tmp_path / "site", lifetime=timedelta(seconds=10))
    with threaded_control.ca() as ca:
        ca.revoke(_serial(site.client_crt), "keyCompromise")
    gateway = gateway_factory(
        grants={},
        tls_files=(site.server_crt, site.server_key, threaded_control.root),
        extra_sections=site.control,
    )
    before = site.server_crt.read_bytes(), site.server_key.read_bytes()
    renewals = _renewals(gateway)
    server = renewables(gateway.gateway.state.config)[0]
    due = datetime.now(UTC) + timedelta(seconds=10)  # past its 2/3
    gateway.call(renewals.look(server, due))
    assert (site.server_crt.read_bytes(), site.server_key.read_bytes()) == before
    gateway.call(gateway.gateway.audit.flush())
    failed = [r for r in _audit(gateway.gateway.state.config.audit_log.parent)
              if r.get("event") == "certificate_renewal_failed"]  # fmt: skip
    assert failed and failed[-1]["reason"] == "refused", failed
    assert "revoked" in failed[-1]["detail"]


def test_while_the_server_is_away_renewal_is_retried_with_capped_backoff(
    threaded_control: ControlServer, gateway_factory: Any, tmp_path: Path
) -> None:
    site = _site(threaded_control, tmp_path / "site", lifetime=timedelta(seconds=10))
    away = site.control.replace(threaded_control.url, "https://127.0.0.1:1")
    gateway = gateway_factory(
        grants={},
        tls_files=(site.server_crt, site.server_key, threaded_control.root),
        extra_sections=away,
    )
    before = site.server_crt.read_bytes()
    renewals = _renewals(gateway)
    server = renewables(gateway.gateway.state.config)[0]
    now = datetime.now(UTC) + timedelta(seconds=10)
    waits = []
    for _ in range(12):
        retry = gateway.call(renewals.look(server, now))
        assert retry is not None
        waits.append((retry - now).total_seconds())
        now = retry
    assert all(0.5 <= w <= 2.0 for w in waits), waits  # renew_retry_max = 2: never above
    assert site.server_crt.read_bytes() == before
    gateway.call(gateway.gateway.audit.flush())
    reasons = {r["reason"] for r in _audit(gateway.gateway.state.config.audit_log.parent)
               if r.get("event") == "certificate_renewal_failed"}  # fmt: skip
    assert reasons == {"unreachable"}


def test_a_customer_certificate_is_never_sent_for_renewal(
    threaded_control: ControlServer, gateway_factory: Any, tmp_path: Path
) -> None:
    site = _site(threaded_control, tmp_path / "site", lifetime=timedelta(seconds=10))
    with CertificateAuthority.init(
        tmp_path / "customer", passphrase=None, unencrypted=True, name="Customer CA"
    ) as customer:
        theirs = customer.issue(Profile.SERVER, "gw", dns=INSTRUMENT_NAMES, days=10)
        customer.handed_out(theirs)
        theirs.write(tmp_path / "customer-gw")
    gateway = gateway_factory(
        grants={},
        tls_files=(
            tmp_path / "customer-gw.crt",
            tmp_path / "customer-gw.key",
            threaded_control.root,
        ),
        extra_sections=site.control,
    )
    renewals = _renewals(gateway)
    server = renewables(gateway.gateway.state.config)[0]
    later = datetime.now(UTC) + timedelta(days=9)
    assert gateway.call(renewals.look(server, later)) is None  # never due: not ours to renew
    assert (tmp_path / "customer-gw.crt").read_bytes() == theirs.chain_pem


def test_what_a_configuration_renews(
    threaded_control: ControlServer, config_writer: Any, pki: Any, simulator: Any, tmp_path: Path
) -> None:
    from labgate.gateway.config import load_config

    site = _site(threaded_control, tmp_path / "site", lifetime=timedelta(seconds=10))
    files = (site.server_crt, site.server_key, threaded_control.root)
    standalone = load_config(config_writer(tmp_path, pki, simulator, tls_files=files))
    assert renewables(standalone) == ()
    both = load_config(
        config_writer(tmp_path, pki, simulator, tls_files=files, extra_sections=site.control)
    )
    assert renewables(both) == (
        Renewable(purpose="server", cert=site.server_crt, key=site.server_key),
        Renewable(purpose="client", cert=site.client_crt, key=site.client_key),
    )
    one_file = site.control.split("\ncert = ")[0] + f'\ncache_dir = "{tmp_path / "c"}"\n'
    shared = load_config(
        config_writer(tmp_path, pki, simulator, tls_files=files, extra_sections=one_file)
    )
    assert [r.purpose for r in renewables(shared)] == ["server"]  # it presents what it serves
    assert shared.control is not None
    chain = x509.load_pem_x509_certificates(site.server_crt.read_bytes())
    assert is_ours(chain, shared.control)
    other = shared.control.model_copy(update={"gateway_name": "site-2"})
    assert not is_ours(chain, other)  # names another gateway
    stranger = shared.control.model_copy(update={"server_ca": pki.root})
    assert not is_ours(chain, stranger)  # chains to a CA that is not the control server's


def test_a_gateway_whose_client_certificate_expired_says_so_and_asks_nothing(
    threaded_control: ControlServer, gateway_factory: Any, tmp_path: Path
) -> None:
    site = _site(threaded_control, tmp_path / "site", lifetime=timedelta(seconds=10))
    past = datetime.now(UTC) - timedelta(minutes=5)
    with CertificateAuthority.open(
        ca_dir(threaded_control.settings.data_dir),
        passphrase=load_passphrase(threaded_control.settings),
        clock=lambda: past,
    ) as ca:
        lapsed = ca.issue(Profile.GATEWAY, "site-1", lifetime=timedelta(seconds=30))
        ca.handed_out(lapsed)
        lapsed.write(site.directory / "towards-control")
    gateway = gateway_factory(
        grants={},
        tls_files=(site.server_crt, site.server_key, threaded_control.root),
        extra_sections=site.control,
    )
    before = site.server_crt.read_bytes()
    renewals = _renewals(gateway)
    server = renewables(gateway.gateway.state.config)[0]
    gateway.call(renewals.look(server, datetime.now(UTC) + timedelta(seconds=10)))
    assert site.server_crt.read_bytes() == before
    gateway.call(gateway.gateway.audit.flush())
    failed = [r for r in _audit(gateway.gateway.state.config.audit_log.parent)
              if r.get("event") == "certificate_renewal_failed"]  # fmt: skip
    assert [r["reason"] for r in failed] == ["expired"], failed
    assert "labgate ca issue" in failed[0]["detail"]
