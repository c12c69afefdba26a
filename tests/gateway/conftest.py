"""Real parts for gateway tests: a labgate CA with client certificates, the instrument simulator on
free loopback ports, and a gateway running on a loop of its own so that the blocking qslib client
can drive it from the test thread."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from labgate.gateway.config import GatewayConfig, load_config
from labgate.gateway.pins import spki_pin
from labgate.gateway.server import Gateway
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile

T = TypeVar("T")

INSTRUMENT_PASSWORD = "gateway-only-8c1f"
INSTRUMENTS = ("qs5-plain", "qs5-tls", "qs5-legacy")


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """A client certificate on disk: `pem` holds chain and key, as qslib wants it."""

    name: str
    uri: str
    pem: Path
    crt: Path
    key: Path
    serial: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Pki:
    directory: Path
    ca: CertificateAuthority
    root: Path
    gateway_crt: Path
    gateway_key: Path
    crl: Path
    clients: dict[str, Client]
    other_root: Path  # root of a CA the gateway does not trust

    def write_crl(self) -> None:
        from labgate.pki.atomic import write_atomic

        write_atomic(self.crl, self.ca.crl())


def _client(ca: CertificateAuthority, directory: Path, name: str, **kw: Any) -> Client:
    issued = ca.issue(Profile.CLIENT, name, **kw)
    prefix = directory / name
    issued.write(prefix, combined=True)
    return Client(
        name=name,
        uri=f"labgate:user:{name}",
        pem=prefix.with_suffix(".pem"),
        crt=prefix.with_suffix(".crt"),
        key=prefix.with_suffix(".key"),
        serial=issued.serial,
    )


def _days_ago(days: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    # Made three days ago, so that an expired client certificate can be issued from it below.
    CertificateAuthority.init(
        directory / "ca", passphrase=None, unencrypted=True, clock=lambda: _days_ago(3)
    ).close()
    ca = CertificateAuthority.open(directory / "ca", passphrase=None)
    gateway = ca.issue(Profile.GATEWAY, "gw", dns=[*INSTRUMENTS, "localhost"], ips=["127.0.0.1"])
    gateway.write(directory / "gateway")
    root = directory / "root.crt"
    root.write_bytes(ca.root_pem)
    clients = {
        name: _client(ca, directory, name)
        for name in ("alice", "olive", "adam", "gus", "nobody", "revoked", "later")
    }
    ca.revoke(clients["revoked"].serial, "keyCompromise")
    # An expired certificate: issued by the same CA, on a clock two days in the past.
    past = CertificateAuthority.open(
        directory / "ca",
        passphrase=None,
        clock=lambda: _days_ago(2),
    )
    clients["expired"] = _client(past, directory, "expired")
    # A server certificate (serverAuth only) presented as a client certificate.
    server = ca.issue(Profile.SERVER, "not-a-client", dns=["not-a-client.test"])
    server.write(directory / "server-cert", combined=True)
    clients["server-cert"] = Client(
        name="server-cert", uri="", pem=directory / "server-cert.pem",
        crt=directory / "server-cert.crt", key=directory / "server-cert.key", serial=server.serial,
    )  # fmt: skip
    # A certificate naming alice, from a CA the gateway does not trust.
    other = CertificateAuthority.init(directory / "other-ca", passphrase=None, unencrypted=True)
    clients["stranger"] = _client(other, directory, "alice-elsewhere")
    (directory / "other-root.crt").write_bytes(other.root_pem)
    pki = Pki(
        directory=directory,
        ca=ca,
        root=root,
        gateway_crt=directory / "gateway.crt",
        gateway_key=directory / "gateway.key",
        crl=directory / "ca.crl",
        clients=clients,
        other_root=directory / "other-root.crt",
    )
    pki.write_crl()
    return pki


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # A child process: qslib keeps the GIL while it waits on the network, so nothing it talks to
    # may run on a thread of the test process.
    with _start_simulator(tmp_path_factory.mktemp("instrument")) as running:
        yield running


@contextlib.contextmanager
def _start_simulator(
    state: Path,
    *,
    max_connections: int = 64,
    idle_timeout: float | None = 600.0,
    time_scale: float = 100.0,
) -> Iterator[Any]:
    from labgate.instrument import SimulatorConfig, run_in_process
    from labgate.scpi.access import AccessLevel

    config = SimulatorConfig(
        plain_port=0,
        tls_port=0,
        legacy_port=0,
        passwords={INSTRUMENT_PASSWORD: AccessLevel.ADMINISTRATOR},
        access_limit=AccessLevel.GUEST,
        state_dir=state,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        time_scale=time_scale,  # 100 (the default): the drawer opens in a blink
    )
    with run_in_process(config) as running:
        yield running


GRANTS = {
    "gus": "Guest",
    "alice": "Controller",
    "olive": "Observer",
    "adam": "Administrator",
    "revoked": "Controller",
    "expired": "Controller",
    "later": "Controller",
}


def write_config(
    directory: Path,
    pki: Pki,
    simulator: Any,
    *,
    grants: dict[str, str] | None = None,
    extra_gateway: str = "",
    extra_instrument: str = "",
    shared_listen: str | None = None,
    upstream_pin: str | None = None,
    password: str = INSTRUMENT_PASSWORD,
    tls_files: tuple[Path, Path, Path] | None = None,
    extra_sections: str = "",
) -> Path:
    secret = directory / "instrument.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    pin = upstream_pin or spki_pin(_first_der(Path(simulator.tls_cert)))
    plain, tls, legacy = simulator.plain, simulator.tls, simulator.legacy
    grants = GRANTS if grants is None else grants
    grant_text = "".join(
        f'[[grant]]\nidentity = "labgate:user:{who}"\ninstrument = "*"\nlevel = "{level}"\n\n'
        for who, level in grants.items()
    )
    cert, key, root = tls_files or (pki.gateway_crt, pki.gateway_key, pki.root)
    tls_lines = f'cert = "{cert}"\nkey = "{key}"\nclient_ca = "{root}"'
    if tls_files is None:  # another CA's files come without this CA's CRL
        tls_lines += f'\ncrl = "{pki.crl}"'
    plain_listen = tls_listen = 'listen = "127.0.0.1:0"'
    if shared_listen is not None:  # qs5-plain and qs5-tls on one address, told apart by SNI
        plain_listen = tls_listen = shared_listen
    text = f"""
[gateway]
{tls_lines}
audit_log = "audit.jsonl"
metrics_listen = "127.0.0.1:0"
reload_interval = 0.2
{extra_gateway}

[[instrument]]
name = "qs5-plain"
{plain_listen}
upstream = "plain://{plain[0]}:{plain[1]}"
password_file = "instrument.secret"
{extra_instrument}

[[instrument]]
name = "qs5-tls"
{tls_listen}
upstream = "tls://{tls[0]}:{tls[1]}"
upstream_pin = "{pin}"
password_file = "instrument.secret"

[[instrument]]
name = "qs5-legacy"
listen = "127.0.0.1:0"
upstream = "sslv3://{legacy[0]}:{legacy[1]}"
upstream_pin = "{pin}"
password_file = "instrument.secret"

{grant_text}
{extra_sections}"""
    path = directory / "gateway.toml"
    path.write_text(text)
    return path


def _first_der(pem_path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem_path.read_bytes()).public_bytes(Encoding.DER)


# The loop `labgate gateway` runs on (uvloop); `standard_gateway_factory` covers asyncio's own.
LOOP: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop


class GatewayThread:
    """A started Gateway on an event loop in a thread of its own."""

    def __init__(
        self, config: GatewayConfig, loop_factory: Callable[[], asyncio.AbstractEventLoop] = LOOP
    ) -> None:
        self.loop = loop_factory()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.gateway = Gateway(config)
        self.call(self.gateway.start())
        # As `labgate gateway` does: reload when a configured file changes.
        self._watch = self.call(self._start_watching())

    async def _start_watching(self) -> asyncio.Task[None]:
        from labgate.gateway.reload import watch

        task = asyncio.create_task(watch(self.gateway, asyncio.Event()))
        await asyncio.sleep(0)  # let it read the files' current state before any test writes
        return task

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def run(self, function: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return function()

        return self.call(wrapper())

    def address(self, instrument: str) -> tuple[str, int]:
        host, _, port = self.gateway.addresses[instrument].rpartition(":")
        return host, int(port)

    def trust_only(self, client_ca: Path) -> None:
        """Point the configuration's `client_ca` at another file (the gateway reloads it)."""
        config = self.gateway.state.config.source
        assert config is not None
        text = config.read_text()
        config.write_text(re.sub(r'client_ca = ".*?"', f'client_ca = "{client_ca}"', text))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._watch.cancel)
        with contextlib.suppress(Exception):
            self.call(self.gateway.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class GatewayProcess:
    """`labgate gateway --config ...` as a child process, for the qslib tests."""

    def __init__(self, config: Path) -> None:
        self.directory = config.parent
        self.child = subprocess.Popen(
            [sys.executable, "-m", "labgate", "gateway", "--config", str(config)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.child.stdout is not None
        line = self.child.stdout.readline()
        if not line:
            raise RuntimeError(f"gateway exited with {self.child.wait()} before it was ready")
        self.ready = json.loads(line)

    def address(self, instrument: str) -> tuple[str, int]:
        host, _, port = self.ready["instruments"][instrument].rpartition(":")
        return host, int(port)

    def stop(self) -> int:
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
        try:
            return self.child.wait(timeout=30)
        finally:
            if self.child.stdout is not None:
                self.child.stdout.close()


@pytest.fixture(scope="module")
def gateway_process(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, simulator: Any
) -> Iterator[GatewayProcess]:
    path = write_config(tmp_path_factory.mktemp("gateway"), pki, simulator)
    running = GatewayProcess(path)
    yield running
    running.stop()


@pytest.fixture
def gateway_factory(
    tmp_path: Path, pki: Pki, simulator: Any
) -> Iterator[Callable[..., GatewayThread]]:
    """`start(instrument=None, **config)`: a gateway in a thread, in front of `simulator` or the
    one given."""
    started: list[GatewayThread] = []

    def start(instrument: Any = None, **kw: Any) -> GatewayThread:
        path = write_config(tmp_path, pki, instrument or simulator, **kw)
        running = GatewayThread(load_config(path))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def standard_gateway_factory(
    tmp_path: Path, pki: Pki, simulator: Any
) -> Iterator[Callable[..., GatewayThread]]:
    """As `gateway_factory`, on the standard asyncio loop instead of uvloop."""
    started: list[GatewayThread] = []

    def start(**kw: Any) -> GatewayThread:
        path = write_config(tmp_path, pki, simulator, **kw)
        running = GatewayThread(load_config(path), asyncio.new_event_loop)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def start_simulator() -> Callable[..., contextlib.AbstractContextManager[Any]]:
    """`with start_simulator(state_dir, max_connections=64) as sim:` a simulator of one's own."""
    return _start_simulator


@pytest.fixture
def small_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A simulator of its own that admits 8 connections at most, like a fragile instrument."""
    with _start_simulator(tmp_path_factory.mktemp("small"), max_connections=8) as running:
        yield running


@pytest.fixture
def gateway(gateway_factory: Callable[..., GatewayThread]) -> GatewayThread:
    return gateway_factory()


def _machine(gw: Any, pki: Pki, who: str, instrument: str = "qs5-plain") -> Any:
    """A real qslib client for `who`, through the gateway, checking the gateway's certificate."""
    from qslib import Machine

    host, port = gw.address(instrument)  # a GatewayProcess: qslib and the gateway in one process
    return Machine(
        host,
        port=port,
        ssl=True,
        client_certificate_path=str(pki.clients[who].pem),
        server_ca_file=str(pki.root),
        tls_server_name=instrument,
        max_access_level="Controller",
    )


@pytest.fixture
def machine() -> Callable[..., Any]:
    """`machine(gateway, pki, who, instrument="qs5-plain")`: a qslib Machine through the gateway."""
    return _machine


@pytest.fixture
def instrument_password() -> str:
    return INSTRUMENT_PASSWORD


class RawClient:
    """A TLS client that speaks SCPI lines by hand: for sessions held open, and for attackers."""

    def __init__(
        self,
        gw: Any,
        pki: Pki,
        who: str,
        instrument: str = "qs5-plain",
        *,
        ca: Path | None = None,
        pem: Path | None = None,
        context: ssl.SSLContext | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        if context is None:  # a TLS session resumes only through the context that made it
            context = ssl.create_default_context(cafile=str(ca or pki.root))
            context.load_cert_chain(str(pem or pki.clients[who].pem))
        self.context = context
        host, port = gw.address(instrument)
        raw = socket.create_connection((host, port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname=instrument, session=session)
        self._buffer = b""

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data if data.endswith(b"\n") else data + b"\n")

    def line(self) -> bytes:
        """The next line (b"" once the gateway has closed the connection)."""
        while b"\n" not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                rest, self._buffer = self._buffer, b""
                return rest
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def refused(self) -> bytes:
        """For a refused client: check the greeting is marked refused, send a first command and
        return the ERRor that answers it (b"" if the greeting was a real one)."""
        if b" -refused=" not in self.line():
            return b""
        return self.ask("0 ACC?")

    def ask(self, line: str) -> bytes:
        self.send(line)
        return self.line()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def raw_client() -> Iterator[Callable[..., RawClient]]:
    opened: list[RawClient] = []

    def open_(gw: Any, pki: Pki, who: str, instrument: str = "qs5-plain", **kw: Any) -> RawClient:
        client = RawClient(gw, pki, who, instrument, **kw)
        opened.append(client)
        return client

    yield open_
    for client in opened:
        client.close()


@pytest.fixture
def config_writer() -> Callable[..., Path]:
    """`write(directory, pki, simulator, **options) -> Path` of a gateway.toml."""
    return write_config


@pytest.fixture
def gateway_process_factory(
    tmp_path: Path, pki: Pki, simulator: Any
) -> Iterator[Callable[..., GatewayProcess]]:
    """`start(instrument=None, **config)`: `labgate gateway` as a child process, in front of
    `simulator` or the one given; stopped at the end of the test."""
    started: list[GatewayProcess] = []

    def start(instrument: Any = None, **kw: Any) -> GatewayProcess:
        running = GatewayProcess(write_config(tmp_path, pki, instrument or simulator, **kw))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def _resident_bytes() -> int:
    """This process's resident memory: the gateway under test runs in it (Python's, OpenSSL's
    and the event loop's buffers alike, but not the kernel's socket buffers)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def resident_bytes() -> Callable[[], int]:
    """Reads the test process's resident memory (Linux only: tests skip elsewhere)."""
    return _resident_bytes
