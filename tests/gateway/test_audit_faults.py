"""The audit log under real faults, with `labgate sim` and `labgate gateway` as child processes.

- The way it failed: the gateway killed with SIGKILL while many clients send commands. Every
  command a client got `OK` for, and every command the instrument ran, must be in the log. The
  clients are threads, each with its own TLS session, each remembering what it got `OK` for.
- A disk that stops taking writes: the kernel refuses the gateway's writes past a file size
  limit (RLIMIT_FSIZE, set on the running gateway: EFBIG, a short write first, as a full disk
  does). The command in flight is refused, not forwarded; when writes work again the gateway
  says so and serves commands, and the chain goes on unbroken.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labgate.instrument.commandlog import read_log

pytestmark = pytest.mark.slow

CLIENTS = 24  # within the default of 32 sessions per identity
LOAD_SECONDS = 3.0
MAX_COMMANDS = 5_000  # per client: a bound, far above what a client sends in LOAD_SECONDS


@dataclass(frozen=True, slots=True, kw_only=True)
class Sim:
    """What `write_config` needs of a simulator, read from `labgate sim`'s ready line."""

    plain: tuple[str, int]
    tls: tuple[str, int]
    legacy: tuple[str, int]
    tls_cert: str
    state_dir: Path


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _labgate(*args: str, stderr: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labgate", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _ready(child: subprocess.Popen[str], what: str) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"{what} exited with {child.wait()} before it was ready")
    ready: dict[str, Any] = json.loads(line)
    return ready


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    if child.stdout is not None:
        child.stdout.close()


@pytest.fixture
def sim_process(tmp_path: Path, instrument_password: str) -> Iterator[Sim]:
    state = tmp_path / "sim"
    state.mkdir(mode=0o700)
    secrets_file = tmp_path / "sim-secrets.toml"
    secrets_file.write_text(
        f'[[password]]\nlevel = "Administrator"\nsecret = "{instrument_password}"\n'
    )
    secrets_file.chmod(0o600)
    with (tmp_path / "sim.log").open("w") as log:
        child = _labgate(
            "sim", "--plain-port", "0", "--tls-port", "0", "--legacy-port", "0",
            "--secrets", str(secrets_file), "--access-limit", "Guest", "--state-dir", str(state),
            "--max-connections", "128", "--time-scale", "100",
            stderr=log,
        )  # fmt: skip
    try:
        ready = _ready(child, "labgate sim")
        yield Sim(
            plain=_address(ready["plain"]),
            tls=_address(ready["tls"]),
            legacy=_address(ready["legacy"]),
            tls_cert=ready["tls_cert"],
            state_dir=state,
        )
    finally:
        _stop(child)


class Client(threading.Thread):
    """One session sending `FILE:LIST?` with a pattern of its own each time, one at a time."""

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, stop: threading.Event):
        super().__init__(daemon=True)
        self.address = address
        self.context = context
        self.stop = stop
        self.acknowledged: list[str] = []  # tokens of the commands answered OK
        self.sent = 0
        self.error = ""

    def run(self) -> None:
        try:
            raw = socket.create_connection(self.address, timeout=20)
            with self.context.wrap_socket(raw, server_hostname="qs5-plain") as sock:
                lines = _Lines(sock)
                if not lines.next().startswith(b"READy"):
                    self.error = "no greeting"
                    return
                sock.sendall(b"0 ACC -stealth=false -exclusive=false Observer\n")
                if lines.next() != b"OK 0":
                    self.error = "ACC refused"
                    return
                for ident in range(1, MAX_COMMANDS + 1):
                    if self.stop.is_set():
                        return
                    token = secrets.token_hex(8)
                    sock.sendall(
                        b"%d FILE:LIST? public_run_complete/%s-*\n" % (ident, token.encode())
                    )
                    self.sent += 1
                    first = lines.next()
                    if not first.startswith(b"OK %d " % ident):
                        self.error = f"answered {first[:80]!r}"
                        return
                    self.acknowledged.append(token)  # the instrument has run it: OK came back
                    if b"</quote.reply>" not in first:
                        while b"</quote.reply>" not in lines.next():
                            pass
        except (OSError, EOFError):
            return  # the gateway was killed: what was acknowledged so far is what counts


class _Lines:
    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def _audited_tokens(path: Path) -> tuple[set[str], list[bytes]]:
    """Tokens of every command record in the complete lines of the log, and the lines."""
    lines = path.read_bytes().splitlines(keepends=True)
    tokens = set()
    for line in lines:
        if not line.endswith(b"\n"):
            continue  # a last line cut by the kill: it vouches for nothing
        record = json.loads(line)
        if record.get("event") == "command" and record.get("command") == "FILE:LIST?":
            (pattern,) = record["args"]
            tokens.add(pattern.removeprefix("public_run_complete/").removesuffix("-*"))
    return tokens, lines


def test_kill_9_under_load_loses_no_acknowledged_command(
    tmp_path: Path, pki: Any, sim_process: Sim, config_writer: Any
) -> None:
    config = config_writer(tmp_path, pki, sim_process, extra_instrument="max_upstream = 32")
    audit_log = tmp_path / "audit.jsonl"
    with (tmp_path / "gateway.log").open("w") as log:
        gateway = _labgate("gateway", "--config", str(config), stderr=log)
    try:
        ready = _ready(gateway, "labgate gateway")
        address = _address(ready["instruments"]["qs5-plain"])
        context = ssl.create_default_context(cafile=str(pki.root))
        context.load_cert_chain(str(pki.clients["alice"].pem))
        stop = threading.Event()
        clients = [Client(address, context, stop) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline and not all(c.acknowledged for c in clients):
            time.sleep(0.05)
        time.sleep(max(0.0, deadline - time.monotonic()))
        gateway.send_signal(signal.SIGKILL)  # mid-load: every client has commands in flight
        gateway.wait(timeout=30)
    finally:
        stop.set()
        _stop(gateway)
    for client in clients:
        client.join(30)
    assert not any(c.is_alive() for c in clients)
    assert not [c.error for c in clients if c.error], "a client saw something other than OK"

    acknowledged = {token for c in clients for token in c.acknowledged}
    assert len(acknowledged) > CLIENTS * 5, "too little load to prove anything"
    audited, lines = _audited_tokens(audit_log)
    missing = acknowledged - audited
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged commands not on record"
    ran = _ran(sim_process)
    assert acknowledged <= ran
    unrecorded = ran - audited
    assert not unrecorded, f"the instrument ran {len(unrecorded)} commands that are not on record"

    # The log itself: intact up to where the kill stopped it. A cut last line is possible (the
    # kill can land inside a write) and is named as such; nothing before it may be wrong.
    result = subprocess.run(
        [sys.executable, "-m", "labgate", "audit", "verify", str(audit_log)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if lines[-1].endswith(b"\n"):
        assert result.returncode == 0, result.stderr
        assert "not closed (still open, or stopped abruptly)" in result.stdout
    else:
        assert result.returncode == 1
        assert f"line {len(lines)} truncated" in result.stderr
        assert f"the {len(lines) - 1} records before it are intact" in result.stderr


def _session(address: tuple[str, int], pki: Any) -> tuple[ssl.SSLSocket, _Lines]:
    context = ssl.create_default_context(cafile=str(pki.root))
    context.load_cert_chain(str(pki.clients["alice"].pem))
    sock = context.wrap_socket(
        socket.create_connection(address, timeout=20), server_hostname="qs5-plain"
    )
    lines = _Lines(sock)
    assert lines.next().startswith(b"READy")
    sock.sendall(b"0 ACC -stealth=false -exclusive=false Observer\n")
    assert lines.next() == b"OK 0"
    return sock, lines


def _ask(sock: ssl.SSLSocket, lines: _Lines, ident: int, token: str) -> bytes:
    sock.sendall(b"%d FILE:LIST? public_run_complete/%s-*\n" % (ident, token.encode()))
    first = lines.next()
    if first.startswith(b"OK ") and b"</quote.reply>" not in first:
        while b"</quote.reply>" not in lines.next():
            pass
    return first


def _ran(sim: Sim) -> set[str]:
    return {
        entry["raw"].split("public_run_complete/", 1)[1].removesuffix("-*")
        for entry in read_log(sim.state_dir / "commands.jsonl")
        if "public_run_complete/" in str(entry.get("raw", ""))
    }


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
def test_a_disk_that_stops_taking_writes_lets_no_unrecorded_command_through(
    tmp_path: Path, pki: Any, sim_process: Sim, config_writer: Any
) -> None:
    config = config_writer(tmp_path, pki, sim_process)
    audit_log = tmp_path / "audit.jsonl"
    gateway_log = tmp_path / "gateway.log"
    with gateway_log.open("w") as log:
        gateway = _labgate("gateway", "--config", str(config), stderr=log)
    try:
        address = _address(_ready(gateway, "labgate gateway")["instruments"]["qs5-plain"])
        sock, lines = _session(address, pki)
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # From here the gateway's files may grow by 16 KiB: some dozens of records.
        limit = audit_log.stat().st_size + 16 * 1024
        resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE, (limit, hard))
        refused_token = ""
        for ident in range(1, 2001):
            token = secrets.token_hex(8)
            try:
                answer = _ask(sock, lines, ident, token)
            except EOFError:
                refused_token = token
                break
            if not answer.startswith(b"OK "):
                assert answer.startswith(b"ERRor 0 [IOError]"), answer
                assert b"audit log cannot record" in answer
                refused_token = token
                break
        assert refused_token, "the size limit never stopped the log"
        sock.close()
        time.sleep(0.5)
        ran = _ran(sim_process)
        assert refused_token not in ran  # the one in flight did not go out
        on_disk, _ = _audited_tokens(audit_log)  # complete lines only: a write was cut short
        assert ran <= on_disk, "the instrument ran commands whose records never got on disk"

        # Writes work again: the gateway recovers, says so, and serves commands again.
        resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE, (hard, hard))
        deadline = time.monotonic() + 20
        while "writing works again" not in gateway_log.read_text():
            assert time.monotonic() < deadline, gateway_log.read_text()[-2000:]
            time.sleep(0.05)
        sock, lines = _session(address, pki)
        after = secrets.token_hex(8)
        assert _ask(sock, lines, 1, after).startswith(b"OK 1")
        sock.close()
    finally:
        _stop(gateway)
    assert gateway.returncode == 0
    audited, _ = _audited_tokens(audit_log)
    assert after in audited
    assert _ran(sim_process) <= audited  # everything the instrument ran is on record
    result = subprocess.run(
        [sys.executable, "-m", "labgate", "audit", "verify", str(audit_log)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "closed cleanly" in result.stdout
    recovered = [
        json.loads(line) for line in audit_log.read_bytes().splitlines() if b"log-recovered" in line
    ]
    assert len(recovered) == 1 and "too large" in recovered[0]["reason"].lower()
