"""Fixtures: real simulators on ephemeral loopback ports, and a small raw SCPI client.

qslib's compiled core holds the GIL while it waits on the network, so the simulator that qslib
talks to runs in a child process (`run_in_process`). Raw-socket tests use `run_in_thread`.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labgate.instrument import SimulatorConfig, run_in_process, run_in_thread
from labgate.instrument.process import SimulatorProcess
from labgate.instrument.simulator import RunningSimulator
from labgate.scpi.access import AccessLevel
from labgate.scpi.framing import Decoder
from labgate.scpi.messages import Reply, parse_reply

CONTROLLER_PASSWORD = "controller-secret-for-tests"
OBSERVER_PASSWORD = "observer-secret-for-tests"
PASSWORDS = {
    CONTROLLER_PASSWORD: AccessLevel.CONTROLLER,
    OBSERVER_PASSWORD: AccessLevel.OBSERVER,
}
# 100 simulated seconds per real second: a 30 s hold passes in 0.3 s.
FAST = 100.0


def fast_config(state_dir: Path, **overrides: object) -> SimulatorConfig:
    settings: dict[str, object] = {
        "state_dir": state_dir,
        "plain_port": 0,
        "tls_port": 0,
        "legacy_port": 0,
        "passwords": PASSWORDS,
        "access_limit": AccessLevel.GUEST,
        "time_scale": FAST,
    }
    settings.update(overrides)
    return SimulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def controller_password() -> str:
    return CONTROLLER_PASSWORD


@pytest.fixture
def observer_password() -> str:
    return OBSERVER_PASSWORD


@pytest.fixture
def make_config() -> Callable[..., SimulatorConfig]:
    return fast_config


@pytest.fixture
def raw() -> Callable[[tuple[str, int] | None], RawClient]:
    """Open a raw SCPI connection (greeting already read) to an address."""
    return raw_client


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    """One simulator process per test module (qslib opens a connection per call)."""
    with run_in_process(fast_config(tmp_path_factory.mktemp("sim"))) as running:
        yield running


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[RunningSimulator]:
    with run_in_thread(fast_config(tmp_path)) as running:
        yield running


class RawClient:
    """A line-level client: send bytes, read replies parsed by the scpi core."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock = sock
        self.sock.settimeout(10)
        self._decoder = Decoder()
        self._ready: list[bytes] = []
        self.greeting = self.read()

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data if data.endswith(b"\n") else data + b"\n")

    def read(self) -> Reply:
        while not self._ready:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._ready.extend(self._decoder.feed(data))
        return parse_reply(self._ready.pop(0))

    def ask(self, line: str) -> Reply:
        self.send(line)
        return self.read()

    def closed_by_server(self) -> bool:
        """Whether the server hangs up (EOF) within the socket timeout."""
        try:
            while data := self.sock.recv(65536):
                self._ready.extend(self._decoder.feed(data))
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True

    def close(self) -> None:
        self.sock.close()


def raw_client(address: tuple[str, int] | None) -> RawClient:
    assert address is not None
    return RawClient(socket.create_connection(address, timeout=10))
