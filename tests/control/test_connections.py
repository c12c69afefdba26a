"""Slow clients from the attacker's side: half-sent requests, stalled handshakes, many sockets.

Every connection gets a deadline for its TLS handshake and headers and one for its body, and a
source address may hold only so many connections; a legitimate client is served meanwhile.
The server is the real one (`run_in_thread`, and once `labgate server run` on uvloop), over
TLS on loopback; attackers bind other loopback addresses (127.0.0.x) to be other sources.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from labgate.control.http.serving import run_in_thread

# Generous bounds: the machine may be loaded, and nothing here asserts a tight time.
CUT_OFF_WITHIN = 20.0


@pytest.fixture
def guarded(settings: Any, clock: Any) -> Iterator[Any]:
    """A live server with short deadlines (1 s headers, 1 s body) and 8 connections a source."""
    if settings.database_url:
        pytest.skip("connections are handled before any database is involved")
    strict = settings.model_copy(
        update={
            "http_header_timeout_seconds": 1.0,
            "http_body_timeout_seconds": 1.0,
            "http_connections_per_address": 8,
        }
    )
    with run_in_thread(strict, clock=clock) as running:
        yield running


def _context(running: Any) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=running.ca_root)


async def _open(running: Any, source: str, *, tls: bool) -> tuple[Any, Any]:
    return await asyncio.open_connection(
        "127.0.0.1",
        running.port,
        local_addr=(source, 0),
        ssl=_context(running) if tls else None,
        server_hostname="localhost" if tls else None,
    )


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server ends the connection (EOF or reset) within `within` seconds."""
    try:
        while True:
            if not await asyncio.wait_for(reader.read(4096), timeout=within):
                return True
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError, OSError):
        return True


def _healthz(running: Any) -> int:
    with httpx.Client(verify=_context(running), timeout=15) as http:
        return http.get(f"{running.url}/healthz").status_code


def test_half_sent_headers_are_cut_off(guarded: Any) -> None:
    async def attack() -> bool:
        reader, writer = await _open(guarded, "127.0.0.2", tls=True)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")  # never the blank line
        await writer.drain()
        began = time.monotonic()
        for _ in range(int(CUT_OFF_WITHIN)):  # keep trickling: each line is a new byte
            try:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
            except (ConnectionError, OSError):
                return True
            if await _closed_by_server(reader, 1.0):
                return True
            if time.monotonic() - began > CUT_OFF_WITHIN:
                break
        return False

    assert asyncio.run(attack()) is True


def test_a_stalled_tls_handshake_is_cut_off(guarded: Any) -> None:
    async def attack() -> bool:
        reader, writer = await _open(guarded, "127.0.0.3", tls=False)
        writer.write(b"\x16\x03\x01")  # the start of a ClientHello, and nothing more
        await writer.drain()
        return await _closed_by_server(reader, CUT_OFF_WITHIN)

    assert asyncio.run(attack()) is True


def test_a_trickled_body_is_cut_off(guarded: Any) -> None:
    async def attack() -> bool:
        reader, writer = await _open(guarded, "127.0.0.4", tls=True)
        writer.write(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"
        )
        await writer.drain()
        began = time.monotonic()
        while time.monotonic() - began < CUT_OFF_WITHIN:
            try:
                writer.write(b" ")
                await writer.drain()
            except (ConnectionError, OSError):
                return True
            if await _closed_by_server(reader, 0.5):
                return True
        return False

    assert asyncio.run(attack()) is True


def test_one_source_holds_at_most_its_share_of_connections(guarded: Any) -> None:
    async def attack() -> list[bool]:
        opened = [await _open(guarded, "127.0.0.5", tls=False) for _ in range(20)]
        # The server refuses the 12 beyond the cap at once, before any TLS work.
        closed = await asyncio.gather(*(_closed_by_server(r, 0.5) for r, _ in opened))
        for _, writer in opened:
            writer.close()
        return list(closed)

    closed = asyncio.run(attack())
    assert closed.count(True) == 12, closed
    assert closed[:8] == [False] * 8
    assert _healthz(guarded) == 200  # another source is not affected


@pytest.mark.slow
def test_a_client_is_served_while_300_slow_connections_are_held(settings: Any, clock: Any) -> None:
    """300 slow connections from ten sources (half never handshake, half never finish their
    headers): a normal request is answered meanwhile, and the server cuts every one of them
    off at the header deadline."""
    if settings.database_url:
        pytest.skip("connections are handled before any database is involved")
    deadline = 4.0
    patient = settings.model_copy(update={"http_header_timeout_seconds": deadline})
    with run_in_thread(patient, clock=clock) as running:

        async def attack() -> tuple[int, int, int, list[bool]]:
            async def slow(n: int) -> tuple[Any, Any, float]:
                source = f"127.0.1.{n % 10 + 1}"
                if n % 2:
                    reader, writer = await _open(running, source, tls=False)
                    writer.write(b"\x16\x03\x01")
                else:
                    reader, writer = await _open(running, source, tls=True)
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                await writer.drain()
                return reader, writer, time.monotonic()

            held = []
            for start in range(0, 300, 50):  # in batches, so a loaded machine keeps up
                held += await asyncio.gather(*(slow(n) for n in range(start, start + 50)))
            served = await asyncio.to_thread(_healthz, running)
            now = time.monotonic()
            # Those opened well within the deadline before the answer must still be held; on a
            # loaded machine the first batches may already have met their deadline (rightly).
            young = [reader for reader, _, opened in held if now - opened < deadline - 1.0]
            still_open = sum(not reader.at_eof() for reader in young)
            cut = await asyncio.gather(
                *(_closed_by_server(reader, CUT_OFF_WITHIN) for reader, _, _ in held)
            )
            for _, writer, _ in held:
                writer.close()
            return served, len(young), still_open, list(cut)

        served, young, still_open, cut = asyncio.run(attack())
    assert served == 200
    # They really were held while the client was served: every one still within its deadline
    # (all 300 on an idle machine), and at least the last batch of 50.
    assert young >= 50 and still_open == young, (young, still_open)
    assert all(cut), cut.count(False)


def test_the_real_server_process_cuts_off_half_sent_headers(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`labgate server run` (uvloop) with its deadline from the environment."""
    import os

    from tests.control.test_cli_server import FAST, Running, _init

    env = {**os.environ, **FAST, "LABGATE_HTTP_HEADER_TIMEOUT_SECONDS": "1"}
    data = tmp_path / "srv"
    _init(data, env, None)
    server = Running(data, env)
    try:
        port = server.ready["port"]
        context = ssl.create_default_context(cafile=data / "ca" / "root.crt")

        async def attack() -> bool:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost"
            )
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            await writer.drain()
            return await _closed_by_server(reader, CUT_OFF_WITHIN)

        assert asyncio.run(attack()) is True
        assert server.http.get("/healthz").status_code == 200
    finally:
        server.stop()


def test_the_real_server_process_passes_the_client_certificate_through(tmp_path: Any) -> None:
    """Under uvloop, the TLS layer this module installs still hands the verified client
    certificate to the application: a gateway fetches its bundle with it, and not without."""
    import os

    from tests.control.conftest import tls_identity
    from tests.control.test_cli_server import FAST, Running, _init

    from labgate.control import keystore
    from labgate.control.layout import ca_dir
    from labgate.control.settings import ControlSettings
    from labgate.pki.authority import CertificateAuthority
    from labgate.pki.profiles import Profile

    env = {**os.environ, **FAST}
    data = tmp_path / "srv"
    _init(data, env, None)
    passphrase = keystore.load_passphrase(ControlSettings.load(data))
    with CertificateAuthority.open(ca_dir(data), passphrase=passphrase) as ca:
        issued = ca.issue(Profile.GATEWAY, "site-1", dns=["localhost"])
    assert issued.key_pem is not None
    chain, key = tls_identity(tmp_path, "gw", issued.chain_pem, issued.key_pem)
    server = Running(data, env)
    try:
        context = ssl.create_default_context(cafile=data / "ca" / "root.crt")
        context.load_cert_chain(chain, key)
        path = "/api/v1/gateways/site-1/bundle?instrument=qs1"
        with httpx.Client(base_url=server.ready["url"], verify=context, timeout=30) as gateway:
            answer = gateway.get(path)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/jose")
        assert server.http.get(path).status_code == 401  # the same request, no certificate
    finally:
        server.stop()
