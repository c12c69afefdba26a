"""The three doors: plain, TLS 1.2/1.3 (Python ssl), legacy SSLv3/TLS 1.0 (tlslite-ng)."""

from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tlslite.api import HandshakeSettings, TLSConnection, TLSLocalAlert, TLSRemoteAlert
from tlslite.errors import TLSAbruptCloseError

from labgate.instrument import run_in_thread
from labgate.instrument.simulator import RunningSimulator
from labgate.scpi.framing import Decoder
from labgate.scpi.messages import Ok, Ready, parse_reply

Raw = Callable[[tuple[str, int] | None], Any]


class TlsliteClient:
    """Just enough of a line client over a tlslite-ng connection."""

    def __init__(self, address: tuple[str, int], version: tuple[int, int]) -> None:
        sock = socket.create_connection(address, timeout=10)
        self.connection = TLSConnection(sock)
        settings = HandshakeSettings()
        settings.minVersion = version
        settings.maxVersion = version
        self.connection.handshakeClientCert(settings=settings)
        self.decoder = Decoder()
        self.pending: list[bytes] = []

    def read(self) -> Any:
        while not self.pending:
            # Records may split a line anywhere (SSLv3 sends 1/n-1 records): buffer by line.
            self.pending.extend(self.decoder.feed(bytes(self.connection.read())))
        return parse_reply(self.pending.pop(0))

    def ask(self, line: str) -> Any:
        self.connection.write(line.encode() + b"\n")
        return self.read()


@pytest.mark.parametrize(("version", "name"), [((3, 0), "SSLv3"), ((3, 1), "TLS 1.0")])
def test_legacy_listener_speaks_old_protocols(
    threaded: RunningSimulator,
    controller_password: str,
    version: tuple[int, int],
    name: str,
) -> None:
    assert threaded.legacy is not None
    client = TlsliteClient(threaded.legacy, version)
    assert client.connection.version == version, name
    assert isinstance(client.read(), Ready)
    challenge = client.ask("0 CHAL?")
    answer = hmac.new(controller_password.encode(), challenge.text.encode(), hashlib.md5)
    assert client.ask(f"1 AUTH {answer.hexdigest()}") == Ok(ident=1)
    assert client.ask("2 ACC Controller") == Ok(ident=2)
    assert client.ask("3 DRAW?") == Ok(ident=3, text="Closed")
    assert client.ask("4 QUIT") == Ok(ident=4)
    assert [e["listener"] for e in threaded.received()][-5:] == ["legacy"] * 5


def test_legacy_listener_presents_the_same_certificate(threaded: RunningSimulator) -> None:
    assert threaded.legacy is not None
    client = TlsliteClient(threaded.legacy, (3, 0))
    presented = client.connection.session.serverCertChain.x509List[0].bytes
    from cryptography import x509

    ours = x509.load_pem_x509_certificate(threaded.tls_cert.read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    assert bytes(presented) == ours.public_bytes(Encoding.DER)


def test_legacy_listener_survives_a_plain_text_client(threaded: RunningSimulator, raw: Raw) -> None:
    assert threaded.legacy is not None
    with socket.create_connection(threaded.legacy, timeout=10) as sock:
        sock.sendall(b"0 ACC?\n")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(100):  # perhaps an alert, then the end: never a greeting
            received += chunk
        assert b"READy" not in received
    assert TlsliteClient(threaded.legacy, (3, 0)).read() is not None


def test_modern_listener_verifies_as_localhost_with_tls13(threaded: RunningSimulator) -> None:
    assert threaded.tls is not None
    context = ssl.create_default_context(cafile=str(threaded.tls_cert))
    with (
        socket.create_connection(threaded.tls, timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"
        assert tls.recv(200).startswith(b"READy -session=")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_modern_listener_refuses_tls11(threaded: RunningSimulator) -> None:
    assert threaded.tls is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection(threaded.tls, timeout=10) as sock,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(sock, server_hostname="localhost")


def test_modern_listener_refuses_sslv3_from_tlslite(threaded: RunningSimulator) -> None:
    assert threaded.tls is not None
    # OpenSSL 3 knows no SSLv3: it refuses with an alert or just hangs up.
    with pytest.raises((TLSLocalAlert, TLSRemoteAlert, TLSAbruptCloseError)):
        TlsliteClient(threaded.tls, (3, 0))


def test_connections_past_the_limit_are_refused_and_peak_is_kept(
    tmp_path: Path, make_config: Callable[..., Any], raw: Raw
) -> None:
    with run_in_thread(make_config(tmp_path, max_connections=2, legacy_port=None)) as sim:
        first, second = raw(sim.plain), raw(sim.plain)
        with socket.create_connection(sim.plain, timeout=10) as third:
            assert third.recv(100) == b""  # closed without a greeting
        assert sim.peak_connections == 2
        first.close()
        deadline = time.monotonic() + 10
        while True:  # the slot frees once the server has seen the close
            try:
                again = raw(sim.plain)
                break
            except ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert isinstance(again.greeting, Ready)
        second.close()
        again.close()
        assert sim.peak_connections == 2


def test_peak_counts_simultaneous_connections_across_listeners(
    threaded: RunningSimulator, raw: Raw
) -> None:
    held = [raw(threaded.plain) for _ in range(3)]
    assert threaded.tls is not None
    context = ssl.create_default_context(cafile=str(threaded.tls_cert))
    with (
        socket.create_connection(threaded.tls, timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        tls.recv(200)
        assert threaded.peak_connections >= 4
    for client in held:
        client.close()
