"""Real parts for scan tests: simulators on free loopback ports (in a thread of this process, so
a test can read the simulator's own connection count), certificates made to order, and a
recording relay that shows exactly which bytes a scan sent."""

from __future__ import annotations

import contextlib
import datetime
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from labgate.instrument import SimulatorConfig, run_in_thread
from labgate.instrument.simulator import RunningSimulator
from labgate.scan.budget import Limits
from labgate.scan.scanner import InstrumentScan, scan_instrument
from labgate.scan.targets import Target
from labgate.scpi.access import AccessLevel

STRONG = "k3Jx9-strong-generated-secret-Qw2"
# Fast enough for tests that do not measure the budget itself (that one uses the defaults).
QUICK = Limits(per_second=20.0, total=40)


def sim_config(state_dir: Path, **overrides: object) -> SimulatorConfig:
    settings: dict[str, object] = {
        "state_dir": state_dir,
        "plain_port": 0,
        "tls_port": 0,
        "legacy_port": 0,
        "passwords": {STRONG: AccessLevel.FULL},
        "access_limit": AccessLevel.GUEST,
        "time_scale": 100.0,
    }
    settings.update(overrides)
    return SimulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def simulator(tmp_path: Path) -> Callable[..., contextlib.AbstractContextManager[RunningSimulator]]:
    """`with simulator(**config) as sim:` a simulator on its own thread."""

    @contextlib.contextmanager
    def start(**overrides: object) -> Iterator[RunningSimulator]:
        state = tmp_path / f"sim-{len(list(tmp_path.iterdir()))}"
        with run_in_thread(sim_config(state, **overrides)) as running:
            yield running

    return start


def scan(host: str, *ports: int, limits: Limits = QUICK, **kw: Any) -> InstrumentScan:
    return scan_instrument(Target(host=host, ports=ports), limits=limits, **kw)


def ids(result: InstrumentScan, port: int | None = None, status: str = "fail") -> set[str]:
    return {
        f.id
        for f in result.findings
        if f.status.value == status and (port is None or f.endpoint.endswith(f":{port}"))
    }


def make_certificate(directory: Path, *, days: int, bits: int = 2048) -> tuple[Path, Path]:
    """A self-signed RSA server certificate valid from a week ago for `days` more days (negative:
    expired), key 0600."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qs5.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert, key_path = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert, key_path


class Relay:
    """A loopback TCP relay to `upstream` that keeps every byte the client sent."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sent = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if record:
                    self.sent += data
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def relay() -> Iterator[Callable[[tuple[str, int]], Relay]]:
    made: list[Relay] = []

    def start(upstream: tuple[str, int]) -> Relay:
        made.append(Relay(upstream))
        return made[-1]

    yield start
    for each in made:
        each.close()
