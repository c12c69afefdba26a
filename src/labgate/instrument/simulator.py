"""Starting and stopping a simulator: listeners, shared state, the command log.

`start(config)` runs inside an asyncio loop. `run_in_thread(config)` gives a sync caller one on
its own thread. qslib's compiled core holds the GIL while it waits on the network, so a test that
drives qslib needs the simulator in another process: `labgate.instrument.process.run_in_process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labgate.instrument.certificate import CertificateFiles, check_given, make_self_signed
from labgate.instrument.commandlog import CommandLog, read_log
from labgate.instrument.commands import COMMANDS
from labgate.instrument.config import SimulatorConfig
from labgate.instrument.dispatch import CommandTable
from labgate.instrument.filestore import FileStore
from labgate.instrument.listeners import (
    ConnectionGate,
    LegacyListener,
    handshake,
    open_stream_listener,
    tls_context,
)
from labgate.instrument.passwords import generate_secrets, load_secrets, loosely_readable
from labgate.instrument.session import Security, Session
from labgate.instrument.state import InstrumentState
from labgate.instrument.storage import write_atomically
from labgate.scpi.access import AccessLevel

log = logging.getLogger("labgate.instrument")

COMMAND_LOG = "commands.jsonl"
STATUS_FILE = "status.json"
# Sessions get this long to notice their closed streams before they are cancelled.
SHUTDOWN_SECONDS = 2.0
Address = tuple[str, int]


class RunningSimulator:
    """A started simulator: where it listens, what it received, how to stop it."""

    def __init__(
        self,
        *,
        config: SimulatorConfig,
        certificate: CertificateFiles,
        handlers: CommandTable = COMMANDS,
    ) -> None:
        self.config = config
        self.handlers = handlers
        self.tls_cert: Path = certificate.cert
        self._key = certificate.key
        self.command_log: Path = config.state_dir / COMMAND_LOG
        self.passwords_file: Path | None = None
        self.plain: Address | None = None
        self.tls: Address | None = None
        self.legacy: Address | None = None
        self._gate = ConnectionGate(limit=config.max_connections)
        self._tls_context: ssl.SSLContext | None = None
        self._servers: list[asyncio.Server] = []
        self._legacy: LegacyListener | None = None
        self._sessions: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._state: InstrumentState | None = None
        self._commands: CommandLog | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._published_peak = -1

    @property
    def peak_connections(self) -> int:
        return self._gate.peak

    @property
    def connections(self) -> ConnectionGate:
        """Every connection accepted so far, on every listener: count, peak, arrival times."""
        return self._gate

    @property
    def state(self) -> InstrumentState:
        assert self._state is not None, "the simulator has not started"
        return self._state

    def received(self) -> list[dict[str, Any]]:
        """Every command the simulator received so far, oldest first."""
        return read_log(self.command_log)

    def ready_line(self) -> dict[str, str | None]:
        return {
            "plain": _show(self.plain),
            "tls": _show(self.tls),
            "legacy": _show(self.legacy),
            "tls_cert": str(self.tls_cert),
        }

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.close()
        if self._legacy is not None:
            await self._legacy.aclose()
        for writer in list(self._writers):
            writer.close()  # the session sees the end of its stream and finishes by itself
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=SHUTDOWN_SECONDS)
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        if self._state is not None:
            await self._state.stop_clock()
        if self._commands is not None:
            self._commands.close()
        log.info("simulator stopped")

    def stop(self) -> None:
        """Stop from another thread (the one that called `run_in_thread`)."""
        if self._loop is None:
            raise RuntimeError("stop() is for a simulator started by run_in_thread; await aclose()")
        asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout=30)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener: str, peer: str
    ) -> None:
        if self._closed or not self._gate.admit():
            log.warning("%s connection from %s refused: %d connections open", listener, peer,
                        self._gate.active)  # fmt: skip
            writer.close()
            return
        if self._gate.peak > self._published_peak:
            self._publish_status()
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self._writers.add(writer)
        assert self._state is not None and self._commands is not None
        try:
            # The TLS handshake runs after the connection is counted: one that never finishes
            # holds its slot meanwhile, as it would on the instrument.
            tls = self._tls_context if listener == "tls" else None
            if tls is not None and not await handshake(writer, tls):
                writer.close()
                return
            session = Session(state=self._state, security=self._security, commands=self._commands,
                              handlers=self.handlers,
                              listener=listener, peer=peer, writer=writer,
                              idle_timeout=self.config.idle_timeout)  # fmt: skip
            await session.serve(reader)
        finally:
            self._gate.release()
            self._sessions.discard(task)
            self._writers.discard(writer)

    def _publish_status(self) -> None:
        # For a parent process (run_in_process) that cannot read this object's memory.
        self._published_peak = self._gate.peak
        status = {"peak_connections": self._gate.peak, **self.ready_line()}
        write_atomically(self.config.state_dir / STATUS_FILE, json.dumps(status).encode())

    async def _start(self) -> None:
        config = self.config
        self._loop = asyncio.get_running_loop()
        self._security = Security(passwords=self._passwords(), access_limit=config.access_limit)
        self._commands = CommandLog(self.command_log)
        self._state = InstrumentState(
            files=FileStore(config.state_dir / "files"), time_scale=config.time_scale
        )
        self._state.start_clock()
        handler = self._on_connection
        if config.plain_port is not None:
            self.plain = await self._stream(config.plain_port, "plain", handler)
        if config.tls_port is not None:
            self._tls_context = tls_context(CertificateFiles(cert=self.tls_cert, key=self._key))
            self.tls = await self._stream(config.tls_port, "tls", handler)
        if config.legacy_port is not None:
            certificate = CertificateFiles(cert=self.tls_cert, key=self._key)
            self._legacy = LegacyListener(certificate, handler)
            self.legacy = await self._legacy.start(config.host, config.legacy_port)
        self._publish_status()

    async def _stream(self, port: int, name: str, handler: Any) -> Address:
        server = await open_stream_listener(self.config.host, port, name, handler)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        return bound[0], bound[1]

    def _passwords(self) -> dict[str, AccessLevel]:
        config = self.config
        if config.passwords:
            return dict(config.passwords)
        if config.secrets_file is not None:
            loaded = load_secrets(config.secrets_file)
            if loosely_readable(config.secrets_file):
                log.warning("secrets file %s is readable by others; chmod 600 it",
                            config.secrets_file)  # fmt: skip
            return loaded
        made, self.passwords_file = generate_secrets(config.state_dir, config.access_limit)
        log.warning("instrument passwords are in %s (mode 0600)", self.passwords_file)
        return made


async def start(config: SimulatorConfig, *, handlers: CommandTable = COMMANDS) -> RunningSimulator:
    """Start every configured listener; returns once all of them accept connections. `handlers`:
    the commands it answers (all of the simulator's by default)."""
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if config.cert is not None and config.key is not None:
        certificate = check_given(config.cert, config.key)
    else:
        certificate = make_self_signed(config.state_dir)
    simulator = RunningSimulator(config=config, certificate=certificate, handlers=handlers)
    try:
        await simulator._start()
    except BaseException:
        await simulator.aclose()
        raise
    log.info("simulator ready: %s", simulator.ready_line())
    return simulator


@contextlib.contextmanager
def run_in_thread(
    config: SimulatorConfig, *, handlers: CommandTable = COMMANDS
) -> Iterator[RunningSimulator]:
    """A simulator on its own thread and loop, for synchronous callers (not qslib: see above)."""
    loop = asyncio.new_event_loop()
    started: list[RunningSimulator] = []
    failure: list[BaseException] = []
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.append(loop.run_until_complete(start(config, handlers=handlers)))
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, name="labgate-sim", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    simulator = started[0]
    try:
        yield simulator
    finally:
        simulator.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def _show(address: Address | None) -> str | None:
    if address is None:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
