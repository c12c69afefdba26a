"""A client that says nothing for `idle_timeout` is hung up on, so it cannot hold a slot forever."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labgate.instrument import SimulatorConfig, run_in_process, run_in_thread
from labgate.instrument.config import DEFAULT_IDLE_TIMEOUT
from labgate.scpi.access import AccessLevel
from labgate.scpi.messages import Next, Ok, Ready

Raw = Callable[[tuple[str, int] | None], Any]
IDLE = 0.3


def _connect_when_a_slot_frees(raw: Raw, address: tuple[str, int] | None) -> Any:
    deadline = time.monotonic() + 10
    while True:  # the slot frees once the server has finished the closed session
        try:
            return raw(address)
        except ConnectionError:
            assert time.monotonic() < deadline, "no slot came free"
            time.sleep(0.05)


def test_the_default_is_ten_minutes(tmp_path: Path) -> None:
    assert SimulatorConfig(state_dir=tmp_path).idle_timeout == DEFAULT_IDLE_TIMEOUT == 600.0


def test_a_silent_client_is_closed_and_its_slot_is_freed(
    tmp_path: Path, make_config: Callable[..., SimulatorConfig], raw: Raw
) -> None:
    config = make_config(tmp_path, idle_timeout=IDLE, max_connections=1, legacy_port=None)
    with run_in_thread(config) as sim:
        # Timed from before the connection: the simulator's clock starts once it has greeted,
        # which can be a moment before the client has read that greeting.
        opened = time.monotonic()
        silent = raw(sim.plain)
        with socket.create_connection(sim.plain, timeout=10) as refused:
            assert refused.recv(100) == b""  # the silent client holds the only slot
        assert silent.closed_by_server()
        assert time.monotonic() - opened >= IDLE
        again = _connect_when_a_slot_frees(raw, sim.plain)
        assert isinstance(again.greeting, Ready)
        assert again.ask("0 ACC?") == Ok(ident=0, text="-stealth=False -exclusive=False Guest")


def test_a_client_that_keeps_talking_stays_connected(
    tmp_path: Path, make_config: Callable[..., SimulatorConfig], raw: Raw
) -> None:
    with run_in_thread(make_config(tmp_path, idle_timeout=1.0)) as sim:
        client = raw(sim.plain)
        started = time.monotonic()
        ident = 0
        while time.monotonic() - started < 2.5:  # well past the timeout, in small silences
            assert isinstance(client.ask(f"{ident} ACC?"), Ok)
            ident += 1
            time.sleep(0.1)


def test_a_client_waiting_for_its_own_final_reply_is_not_idle(
    tmp_path: Path, make_config: Callable[..., SimulatorConfig], raw: Raw
) -> None:
    # At time scale 1 the drawer takes 2 real seconds, longer than the idle timeout.
    config = make_config(
        tmp_path, idle_timeout=0.5, time_scale=1.0, access_limit=AccessLevel.CONTROLLER
    )
    with run_in_thread(config) as sim:
        client = raw(sim.plain)
        assert client.ask("0 ACC Controller") == Ok(ident=0)
        started = time.monotonic()
        assert client.ask("1 OPEN") == Next(ident=1)
        assert client.read() == Ok(ident=1)
        assert time.monotonic() - started > 0.5
        assert client.closed_by_server()  # and silent once it has its answer


def test_the_child_process_applies_the_idle_timeout(
    tmp_path: Path, make_config: Callable[..., SimulatorConfig], raw: Raw
) -> None:
    with run_in_process(make_config(tmp_path, idle_timeout=IDLE)) as sim:
        assert raw(sim.plain).closed_by_server()


def test_a_silent_tls_client_is_closed_too(
    tmp_path: Path, make_config: Callable[..., SimulatorConfig]
) -> None:
    with run_in_thread(make_config(tmp_path, idle_timeout=IDLE)) as sim:
        assert sim.tls is not None
        context = ssl.create_default_context(cafile=str(sim.tls_cert))
        with (
            socket.create_connection(sim.tls, timeout=10) as sock,
            context.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            received = b""
            while data := tls.recv(200):  # the greeting, then the end of the stream
                received += data
        assert received.startswith(b"READy -session=")
