"""Benchmark: the labgate gateway against socat, stunnel and haproxy doing the same TLS termination.

One invocation starts a minimal instrument-like backend (plain TCP, speaks READy/OK), puts every
proxy in front of it with the same certificates and mutual TLS, and measures from client processes:

- round trip p50/p99 of `POW?`/`DRAW?` on one persistent session;
- qslib-style short sessions (connect, mutual TLS, greeting, one command, close) per second from
  several client processes, and the proxy's CPU time per session; full handshakes and, separately,
  TLS 1.3 session resumption;
- bulk MiB/s and the proxy's CPU per MiB for `FILE:READ?` replies of 8 MiB;
- memory (PSS of the proxy's process tree) with 500 sessions open;
- the same directly against the backend (no proxy, no TLS) as the floor.

Rounds alternate the order of the proxies; figures are medians over rounds. Proxy CPU is read from
/proc (utime + stime of the process tree, reaped children included) before and after each step.
Everything listens on 127.0.0.1 only, every loop is bounded, and every process started is killed
(with its process group) at the end. See bench/README.md for how to read the figures.

Usage: python bench/gateway.py [--quick] [--rounds N] [--only socat,haproxy] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SERVER_NAME = "bench-qs"  # instrument name, TLS server name (SNI) and a DNS SAN of the server cert
CLIENT_NAME = "bench"
GREETING = (
    b"READy -session=474800 -product=QuantStudio3_5 -version=1.3.0 -build=001 -capabilities=Index\n"
)
BULK_END = b"</quote.base64>\n"
# qslib sets its access level on every connection before its command (and the gateway, like the
# instrument, starts a session at Guest); every target gets the same exchange.
ACCESS = b"ACC -stealth=false -exclusive=false Observer"
CLK_TCK = os.sysconf("SC_CLK_TCK")
RTT_WARM_UP = 50  # requests on the round-trip session before the timed ones
CONCURRENT_SESSIONS = 16  # sessions with a command in flight at once, over all client processes
# Not a peer but a reference (see `serve_relay`): never marked best, never a target's yardstick.
RELAY = "py-relay"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """How much work each step does; bounded counts, never 'until told to stop'."""

    rounds: int
    rtt_requests: int
    workers: int
    sessions_per_worker: int
    bulk_bytes: int
    bulk_replies: int
    held_sessions: int


FULL = Sizes(
    rounds=3,
    rtt_requests=2000,
    workers=4,
    sessions_per_worker=200,
    bulk_bytes=8 * 1024 * 1024,
    bulk_replies=24,  # 200 MiB: enough clock ticks of CPU for the per-MiB figure's last digit
    held_sessions=500,
)
QUICK = Sizes(
    rounds=1,
    rtt_requests=200,
    workers=2,
    sessions_per_worker=20,
    bulk_bytes=8 * 1024 * 1024,
    bulk_replies=1,
    held_sessions=50,
)
# For a loaded machine: one round, with the full run's round trips (so that the CPU per command
# rests on thousands of commands) and its 500 held sessions, but fewer short sessions and bulk
# replies than the full run.
SHORT = Sizes(
    rounds=1,
    rtt_requests=2000,
    workers=2,
    sessions_per_worker=150,
    bulk_bytes=8 * 1024 * 1024,
    bulk_replies=6,
    held_sessions=500,
)


# ---------------------------------------------------------------- the backend (the "instrument")


def bulk_reply_body(size: int) -> bytes:
    """Base64 in MIME-width lines inside <quote.base64>, about `size` bytes on the wire."""
    raw_len = size * 57 // 77  # encodebytes turns each 57 bytes into 76 characters and a newline
    raw = (bytes(range(256)) * (raw_len // 256 + 1))[:raw_len]
    return b"<quote.base64>\n" + base64.encodebytes(raw) + BULK_END


class Instrument(asyncio.Protocol):
    """Answers like the QuantStudio for the commands the benchmark sends; everything precomputed."""

    def __init__(self, bulk: bytes) -> None:
        self.bulk = bulk
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        # What ACC? reports: a connection starts at Guest, and ACC changes it, as on the machine
        # (the gateway sets it with an ACC of its own before a session's first command).
        self.access = b"-stealth=False -exclusive=False Guest"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but write like one.
        self.transport = writer = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(GREETING)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.answer(line)

    def answer(self, line: bytes) -> None:
        assert self.transport is not None
        ident, _, rest = line.partition(b" ")
        command = rest.split(b" ", 1)[0].upper()
        if command == b"FILE:READ?":
            self.transport.write(b"OK " + ident + b" " + self.bulk)
            return
        if command == b"ACC?":
            self.transport.write(b"OK " + ident + b" " + self.access + b"\n")
            return
        if command == b"ACC":
            self.access = _access_state(rest)
        reply = {
            b"POW?": b"ON",
            b"DRAW?": b"Closed",
            b"DRAWER?": b"Closed",
            b"CHAL?": b"a1b2c3d4e5f60718",
            b"AUTH": b"",
            b"ACC": b"",
            b"QUIT": b"",
        }.get(command)
        if reply is None:
            self.transport.write(b"ERRor " + ident + b" [NoMatch] --> no such command\n")
            return
        self.transport.write(b"OK " + ident + (b" " + reply if reply else b"") + b"\n")
        if command == b"QUIT":
            self.transport.close()


def _access_state(command: bytes) -> bytes:
    """`ACC [-stealth=B] [-exclusive=B] LEVEL` -> what ACC? then reports."""
    *options, level = command.split()[1:]
    flags = {b"stealth": b"False", b"exclusive": b"False"}
    for option in options:
        key, _, value = option.lstrip(b"-").partition(b"=")
        flags[key.lower()] = b"True" if value.lower() == b"true" else b"False"
    return b"-stealth=%s -exclusive=%s %s" % (flags[b"stealth"], flags[b"exclusive"], level)


def serve_backend(bulk_size: int) -> None:
    """Entry point of the backend process: print the port, serve until killed."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> None:
        bulk = bulk_reply_body(bulk_size)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Instrument(bulk), HOST, 0, backlog=2048)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------- the reference relay


class _RelayToClient(asyncio.Protocol):
    """The backend's side of one relayed connection: bytes straight to the client."""

    def __init__(self, client: _RelayFromClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()  # type: ignore[union-attr]


class _RelayFromClient(asyncio.Protocol):
    """The client's side: mutual TLS done by the listener, bytes straight to the backend."""

    def __init__(self, backend: int) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.upstream: _RelayToClient | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(lambda: _RelayToClient(self), HOST, self.backend)
        self.upstream = upstream
        for data in self.early:
            upstream.transport.write(data)  # type: ignore[union-attr]
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.transport.write(data)  # type: ignore[union-attr]

    def pause_writing(self) -> None:  # the client reads slowly: hold the backend back
        if self.upstream is not None:
            self.upstream.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.resume_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()  # type: ignore[union-attr]


def serve_relay(backend: int, chain: str, key: str, ca: str) -> None:
    """Entry point of the reference relay process: print the port, serve until killed.

    Mutual TLS in (the gateway's own client context: TLS 1.2+, its ciphers, a verified client
    certificate, one stateful TLS 1.3 ticket), plain TCP out, bytes copied both ways on uvloop
    with no framing, no checks and no log. It is not a peer: it is what any proxy written in
    CPython costs before it does any work of its own, so that the gateway's figures can be split
    into that and the price of parsing, judging and recording every command."""
    import uvloop

    from labgate.gateway.client_tls import TlsFiles, build_client_context

    # The gateway's own context, so that the TLS work is the same to the byte.
    context = build_client_context(TlsFiles(cert=Path(chain), key=Path(key), client_ca=Path(ca)))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _RelayFromClient(backend), HOST, 0, ssl=context, backlog=1024
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    uvloop.run(main())


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True, kw_only=True)
class Certs:
    root: Path  # trust anchor for both sides
    server_chain: Path
    server_key: Path
    server_combined: Path  # chain and key in one file (haproxy)
    client_combined: Path
    identity: str
    source: str


def make_certs(directory: Path) -> Certs:
    """A two-tier CA from labgate.pki; trustme if labgate.pki is not importable."""
    try:
        from labgate.pki import CertificateAuthority, Profile
    except ImportError:
        return _trustme_certs(directory)
    ca = CertificateAuthority.init(directory / "ca", passphrase=None, unencrypted=True)
    server = ca.issue(Profile.SERVER, SERVER_NAME, dns=[SERVER_NAME, "localhost"], ips=[HOST])
    server.write(directory / "server", combined=True)
    client = ca.issue(Profile.CLIENT, CLIENT_NAME)
    client.write(directory / "client", combined=True)
    (directory / "root.crt").write_bytes(ca.root_pem)
    ca.close()
    return Certs(
        root=directory / "root.crt",
        server_chain=directory / "server.crt",
        server_key=directory / "server.key",
        server_combined=directory / "server.pem",
        client_combined=directory / "client.pem",
        identity=client.identity or f"labgate:user:{CLIENT_NAME}",
        source="labgate.pki (ECDSA P-256, root + issuing CA)",
    )


def _trustme_certs(directory: Path) -> Certs:
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert(SERVER_NAME, "localhost", HOST)
    identity = f"labgate:user:{CLIENT_NAME}"
    client = ca.issue_cert(identity)
    paths = {name: directory / name for name in ("root.crt", "server.crt", "server.key")}
    ca.cert_pem.write_to_path(str(paths["root.crt"]))
    server.private_key_pem.write_to_path(str(paths["server.key"]))
    (directory / "server.crt").write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    server.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    client.private_key_and_cert_chain_pem.write_to_path(str(directory / "client.pem"))
    for path in directory.iterdir():
        path.chmod(0o600)
    return Certs(
        root=paths["root.crt"],
        server_chain=paths["server.crt"],
        server_key=paths["server.key"],
        server_combined=directory / "server.pem",
        client_combined=directory / "client.pem",
        identity=identity,
        source="trustme (labgate.pki not importable)",
    )


# ---------------------------------------------------------------- processes and /proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def descendants(root: int) -> list[int]:
    """`root` and every process below it (threads are not processes: they share the counters)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of the tree, with the children already reaped (cutime + cstime)."""
    ticks = 0
    for pid in descendants(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def tree_pss_mib(root: int) -> float:
    kib = 0
    for pid in descendants(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                kib += int(line.split()[1])
    return kib / 1024


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, and everything it forked."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # forked children left behind (socat)


def wait_listening(port: int, proc: subprocess.Popen[bytes], *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"not listening on {HOST}:{port} after {timeout:.0f} s")


def read_line(proc: subprocess.Popen[bytes], *, timeout: float) -> bytes:
    """One line of a child's stdout, waiting at most `timeout` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"no line on stdout after {timeout:.0f} s")
    return proc.stdout.readline()


# ---------------------------------------------------------------- the proxies


@dataclass(slots=True, kw_only=True)
class Target:
    """Something the clients connect to: a proxy (with a pid to measure) or the bare backend."""

    name: str
    port: int
    tls: bool
    proc: subprocess.Popen[bytes] | None = None
    note: str = ""
    pss_start_mib: float = float("nan")  # after one smoke session, before any load

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


# Every process this run starts, so that all of them are killed at the end whatever failed.
STARTED: list[subprocess.Popen[bytes]] = []


def spawn(argv: list[str], log: Path, **kwargs: object) -> subprocess.Popen[bytes]:
    proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
        argv,
        stdin=subprocess.DEVNULL,
        stdout=kwargs.pop("stdout", log.open("wb")),
        stderr=log.open("ab"),
        start_new_session=True,  # own process group: kill_tree reaches forked children
        **kwargs,
    )
    STARTED.append(proc)
    return proc


def start_socat(work: Path, certs: Certs, backend: int) -> Target:
    port = free_port()
    listen = (
        f"openssl-listen:{port},bind={HOST},reuseaddr,fork,nodelay,backlog=1024,"
        f"cert={certs.server_chain},key={certs.server_key},cafile={certs.root},verify=1"
    )
    proc = spawn(["socat", listen, f"tcp:{HOST}:{backend},nodelay"], work / "socat.log")
    return Target(name="socat", port=port, tls=True, proc=proc, note=_version(["socat", "-V"], 1))


def start_stunnel(work: Path, certs: Certs, backend: int) -> Target:
    port = free_port()
    config = work / "stunnel.conf"
    config.write_text(
        "foreground = yes\n"
        "pid =\n"
        "socket = l:TCP_NODELAY=1\n"
        "socket = r:TCP_NODELAY=1\n"
        "[instrument]\n"
        f"accept = {HOST}:{port}\n"
        f"connect = {HOST}:{backend}\n"
        f"cert = {certs.server_chain}\n"
        f"key = {certs.server_key}\n"
        f"CAfile = {certs.root}\n"
        "verify = 2\n"
    )
    proc = spawn(["stunnel", str(config)], work / "stunnel.log")
    note = _version(["stunnel", "-version"], 1)
    return Target(name="stunnel", port=port, tls=True, proc=proc, note=note)


def start_haproxy(work: Path, certs: Certs, backend: int) -> Target:
    port = free_port()
    config = work / "haproxy.cfg"
    config.write_text(
        "global\n"
        "    maxconn 4096\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 5s\n"
        "    timeout client 120s\n"
        "    timeout server 120s\n"
        "frontend instrument\n"
        f"    bind {HOST}:{port} ssl crt {certs.server_combined} ca-file {certs.root} "
        "verify required\n"
        "    default_backend instrument\n"
        "backend instrument\n"
        f"    server qs {HOST}:{backend}\n"
    )
    proc = spawn(["haproxy", "-db", "-f", str(config)], work / "haproxy.log")
    return Target(
        name="haproxy", port=port, tls=True, proc=proc, note=_version(["haproxy", "-v"], 0)
    )


def start_labgate(work: Path, certs: Certs, backend: int) -> Target:
    """`labgate gateway --config FILE`, ready when it prints its JSON line of bound addresses."""
    secret = work / "instrument.secret"
    secret.write_text("bench-password\n")
    secret.chmod(0o600)
    config = work / "gateway.toml"
    config.write_text(
        "[gateway]\n"
        f'cert = "{certs.server_chain}"\n'
        f'key = "{certs.server_key}"\n'
        f'client_ca = "{certs.root}"\n'
        f'audit_log = "{work / "audit.jsonl"}"\n'
        f'metrics_listen = "{HOST}:0"\n'
        "max_connections = 4096\n"  # the held-sessions step opens 500 from one identity
        "max_connections_per_identity = 4096\n"
        "max_handshakes_per_source = 4096\n"  # every client runs on this one host
        "\n[[instrument]]\n"
        f'name = "{SERVER_NAME}"\n'
        f'listen = "{HOST}:0"\n'
        f'upstream = "plain://{HOST}:{backend}"\n'
        f'password_file = "{secret}"\n'
        "max_upstream = 1024\n"
        "upstream_queue = 1024\n"
        "\n[[grant]]\n"
        f'identity = "{certs.identity}"\n'
        'instrument = "*"\n'
        'level = "Controller"\n'
    )
    argv = [sys.executable, "-m", "labgate", "gateway", "--config", str(config)]
    proc = spawn(argv, work / "labgate.log", stdout=subprocess.PIPE)
    line = read_line(proc, timeout=30)
    if not line:
        raise RuntimeError(f"exited with status {proc.wait(5)} before its ready line")
    address = json.loads(line)["instruments"][SERVER_NAME]
    port = int(address.rsplit(":", 1)[1])
    return Target(name="labgate", port=port, tls=True, proc=proc, note="labgate gateway")


def start_relay(work: Path, certs: Certs, backend: int) -> Target:
    """The reference relay (`serve_relay`), ready when it prints its port."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-relay", str(backend)]
    argv += [str(certs.server_chain), str(certs.server_key), str(certs.root)]
    proc = spawn(argv, work / "relay.log", stdout=subprocess.PIPE)
    line = read_line(proc, timeout=30)
    if not line.strip().isdigit():
        raise RuntimeError(f"exited with status {proc.wait(5)} before printing its port")
    note = "reference: a CPython (uvloop) TLS relay that checks and records nothing"
    return Target(name=RELAY, port=int(line), tls=True, proc=proc, note=note)


PROXIES: dict[str, Callable[[Path, Certs, int], Target]] = {
    "socat": start_socat,
    "stunnel": start_stunnel,
    "haproxy": start_haproxy,
    "labgate": start_labgate,
    RELAY: start_relay,
}


def _version(argv: list[str], line: int) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = [x for x in (out.stdout + out.stderr).splitlines() if x.strip()]
    wanted = [x for x in lines if argv[0] in x.lower() and any(c.isdigit() for c in x)] or lines
    return wanted[0].strip() if wanted else "?"


# ---------------------------------------------------------------- clients (in worker processes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """What a client process needs to reach a target (picklable)."""

    port: int
    tls: bool
    certs: Certs


_CONTEXTS: dict[Path, ssl.SSLContext] = {}


def client_context(certs: Certs) -> ssl.SSLContext:
    """Like qslib: verify the server against the CA and by name, present a client certificate."""
    if certs.root not in _CONTEXTS:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs.root))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(certs.client_combined))
        _CONTEXTS[certs.root] = ctx
    return _CONTEXTS[certs.root]


class Session:
    """One client connection: greeting read, preamble sent, then numbered requests."""

    def __init__(self, address: Address, *, resume: ssl.SSLSession | None = None) -> None:
        raw = socket.create_connection((HOST, address.port), timeout=60)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = raw
        if address.tls:
            ctx = client_context(address.certs)
            self.sock = ctx.wrap_socket(raw, server_hostname=SERVER_NAME, session=resume)
        self.ident = -1  # qslib counts from 0
        self.buffer = b""
        greeting = self.line()
        if not greeting.startswith(b"READy"):
            raise ConnectionError(f"expected a READy greeting, got {greeting[:80]!r}")
        self.request(ACCESS)

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; had {self.buffer[:80]!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def request(self, command: bytes) -> bytes:
        self.ident += 1
        self.sock.sendall(b"%d %s\n" % (self.ident, command))
        reply = self.line()
        if not reply.startswith(b"OK "):
            raise ConnectionError(f"{command!r} answered {reply[:120]!r}")
        return reply

    def bulk(self) -> int:
        """FILE:READ? and its whole multi-line reply; returns the bytes received."""
        self.ident += 1
        # A path in the instrument's `experiments` namespace: the gateway's policy wants one.
        self.sock.sendall(b"%d FILE:READ? -encoding=base64 experiments/large.eds\n" % self.ident)
        received, tail = len(self.buffer), self.buffer[-32:]
        head = self.buffer[:64]
        self.buffer = b""
        view = memoryview(bytearray(1 << 20))
        while not tail.endswith(BULK_END):
            n = self.sock.recv_into(view)
            if not n:
                raise ConnectionError("connection closed inside a bulk reply")
            received += n
            tail = (tail + bytes(view[max(0, n - 32) : n]))[-32:]
            if len(head) < 64:
                head += bytes(view[: 64 - len(head)])
                first_line = head.split(b"\n")[0]
                if head.startswith(b"ERRor") and first_line != head:  # refused: no body comes
                    raise ConnectionError(f"FILE:READ? answered {first_line!r}")
        return received

    @property
    def reused(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket) and bool(self.sock.session_reused)

    @property
    def tls_session(self) -> ssl.SSLSession | None:
        return self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None

    def close(self) -> None:
        self.sock.close()


def concurrent_client(address: Address, sessions: int, requests: int) -> int:
    """`sessions` sessions at once (threads), each `requests` requests in a row; returns the
    requests answered. Many sessions with a command in flight at once: what lets one fsync of
    the gateway's audit log cover several of them."""
    import threading

    answered = [0] * sessions

    def one(index: int) -> None:
        session = Session(address)
        try:
            for i in range(requests):
                session.request(b"POW?" if i % 2 else b"DRAW?")
                answered[index] += 1
        finally:
            session.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return sum(answered)


def rtt_client(address: Address, requests: int) -> list[float]:
    """Microseconds per request on one session, after a warm-up."""
    session = Session(address)
    try:
        for _ in range(RTT_WARM_UP):
            session.request(b"POW?")
        times = []
        for i in range(requests):
            command = b"POW?" if i % 2 else b"DRAW?"
            start = time.perf_counter_ns()
            session.request(command)
            times.append((time.perf_counter_ns() - start) / 1000)
        return times
    finally:
        session.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCounts:
    done: int
    failed: int
    reused: int
    error: str


def sessions_client(address: Address, count: int, resume: bool, deadline: float) -> SessionCounts:
    """`count` short sessions in a row: full (or resumed) handshake, greeting, one command."""
    done = failed = reused = 0
    error = ""
    saved: ssl.SSLSession | None = None
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        try:
            session = Session(address, resume=saved if resume else None)
            session.request(b"POW?")
            session.request(b"QUIT")
            reused += session.reused
            if resume:
                saved = session.tls_session
            session.close()
            done += 1
        except (OSError, ConnectionError) as err:
            failed += 1
            error = error or f"{type(err).__name__}: {err}"
    return SessionCounts(done=done, failed=failed, reused=reused, error=error)


def bulk_client(address: Address, replies: int) -> tuple[int, float]:
    session = Session(address)
    try:
        session.bulk()  # warm-up
        start = time.perf_counter()
        total = sum(session.bulk() for _ in range(replies))
        return total, time.perf_counter() - start
    finally:
        session.close()


def hold_sessions(
    address: Address, count: int, control: multiprocessing.connection.Connection
) -> None:
    """Open `count` sessions, report how many opened, keep them until told, then close them."""
    sessions = []
    error = ""
    for _ in range(count):
        try:
            sessions.append(Session(address))
        except (OSError, ConnectionError) as err:
            error = f"{type(err).__name__}: {err}"
            break
    control.send((len(sessions), error))
    control.poll(300)
    for session in sessions:
        session.close()


# ---------------------------------------------------------------- measuring one target


@dataclass(slots=True)
class Figures:
    """One round's figures for one target; NaN where a figure does not apply or failed."""

    values: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


NAN = float("nan")


class Bench:
    def __init__(self, sizes: Sizes, certs: Certs, pool: ProcessPoolExecutor) -> None:
        self.sizes = sizes
        self.certs = certs
        self.pool = pool

    def address(self, target: Target) -> Address:
        return Address(port=target.port, tls=target.tls, certs=self.certs)

    def measure(self, target: Target) -> Figures:
        figures = Figures()
        steps: list[Callable[[Target, Figures], None]] = [
            self.round_trip,
            self.concurrent,
            self.short_sessions,
            self.resumed_sessions,
            self.bulk,
            self.held_sessions,
        ]
        for step in steps:
            try:
                step(target, figures)
            except Exception as err:  # one failing step must not hide the other figures
                figures.errors.append(f"{step.__name__}: {type(err).__name__}: {err}")
        return figures

    def cpu(self, target: Target) -> float:
        return tree_cpu_seconds(target.pid) if target.pid else NAN

    def round_trip(self, target: Target, figures: Figures) -> None:
        cpu0 = self.cpu(target)
        times = self.pool.submit(rtt_client, self.address(target), self.sizes.rtt_requests)
        values = sorted(times.result(timeout=300))
        # Per command relayed (the warm-up's included; the session's one handshake is not
        # subtracted: about 2 ms over 2,050 commands, 1 us each).
        commands = self.sizes.rtt_requests + RTT_WARM_UP
        figures.values["cpu_us_per_command"] = (self.cpu(target) - cpu0) * 1e6 / commands
        figures.values["rtt_p50_us"] = values[len(values) // 2]
        figures.values["rtt_p99_us"] = values[min(len(values) - 1, int(len(values) * 0.99))]

    def concurrent(self, target: Target, figures: Figures) -> None:
        sessions = CONCURRENT_SESSIONS // self.sizes.workers
        requests = self.sizes.rtt_requests // 4
        cpu0, start = self.cpu(target), time.perf_counter()
        futures = [
            self.pool.submit(concurrent_client, self.address(target), sessions, requests)
            for _ in range(self.sizes.workers)
        ]
        answered = sum(f.result(timeout=300) for f in futures)
        elapsed = time.perf_counter() - start
        figures.values["concurrent_per_s"] = answered / elapsed
        # Each session's handshake is counted too: about 2 ms over 500 commands, 4 us each.
        figures.values["concurrent_cpu_us_per_command"] = (
            (self.cpu(target) - cpu0) * 1e6 / answered if answered else NAN
        )

    def _sessions(self, target: Target, resume: bool) -> tuple[float, float, float, float, str]:
        address = self.address(target)
        deadline = time.monotonic() + 120
        cpu0, start = self.cpu(target), time.perf_counter()
        futures = [
            self.pool.submit(
                sessions_client, address, self.sizes.sessions_per_worker, resume, deadline
            )
            for _ in range(self.sizes.workers)
        ]
        counts = [f.result(timeout=300) for f in futures]
        elapsed = time.perf_counter() - start
        time.sleep(0.3)  # let a forking proxy reap its children, so their CPU is counted
        cpu = self.cpu(target) - cpu0
        done = sum(c.done for c in counts)
        failed = sum(c.failed for c in counts)
        error = next((c.error for c in counts if c.error), "")
        if failed:
            error = f"{failed} of {failed + done} sessions failed, e.g. {error}"
        failed_fraction = failed / (failed + done) if failed + done else 1.0
        if failed_fraction > 0.5:  # the few that completed say nothing about a rate or a cost
            return NAN, NAN, NAN, failed_fraction, error
        reused = sum(c.reused for c in counts) / done
        return done / elapsed, cpu / done * 1000, reused, failed_fraction, error

    def short_sessions(self, target: Target, figures: Figures) -> None:
        rate, cpu_ms, _, failed, error = self._sessions(target, resume=False)
        figures.values["sessions_per_s"] = rate
        figures.values["cpu_ms_per_session"] = cpu_ms
        figures.values["sessions_failed"] = failed
        if error:
            figures.errors.append(f"short sessions: {error}")

    def resumed_sessions(self, target: Target, figures: Figures) -> None:
        if not target.tls:
            return
        rate, cpu_ms, reused, failed, error = self._sessions(target, resume=True)
        figures.values["resumed_sessions_per_s"] = rate
        figures.values["resumed_cpu_ms_per_session"] = cpu_ms
        figures.values["resumed_fraction"] = reused
        figures.values["resumed_failed"] = failed
        if error:
            figures.errors.append(f"resumed sessions: {error}")

    def bulk(self, target: Target, figures: Figures) -> None:
        cpu0 = self.cpu(target)
        job = self.pool.submit(bulk_client, self.address(target), self.sizes.bulk_replies)
        total, seconds = job.result(timeout=600)
        cpu = self.cpu(target) - cpu0
        mib = total / (1 << 20)
        figures.values["bulk_mib_per_s"] = mib / seconds
        # The warm-up reply went through the proxy too; count its bytes for the CPU figure.
        figures.values["cpu_ms_per_mib"] = cpu * 1000 / (mib * (1 + 1 / self.sizes.bulk_replies))

    def held_sessions(self, target: Target, figures: Figures) -> None:
        if not target.pid:
            return
        figures.values["pss_before_mib"] = tree_pss_mib(target.pid)
        total = self.sizes.held_sessions
        shares = [
            total // self.sizes.workers + (i < total % self.sizes.workers)
            for i in range(self.sizes.workers)
        ]
        context = multiprocessing.get_context("fork")
        holders = []
        for share in shares:
            mine, theirs = context.Pipe()
            proc = context.Process(target=hold_sessions, args=(self.address(target), share, theirs))
            proc.start()
            holders.append((proc, mine))
        try:
            opened, errors = 0, []
            for _, pipe in holders:
                if not pipe.poll(300):
                    raise RuntimeError("a client process did not report its open sessions")
                count, error = pipe.recv()
                opened += count
                if error:
                    errors.append(error)
            time.sleep(0.5)  # let the proxy settle (socat's last forks, buffers)
            figures.values["pss_held_mib"] = tree_pss_mib(target.pid)
            figures.values["held_sessions"] = opened
            if opened < total:
                figures.errors.append(
                    f"held sessions: only {opened} of {total} opened: {errors[0]}"
                )
        finally:
            for proc, pipe in holders:
                with contextlib.suppress(OSError):
                    pipe.send("close")
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.kill()
                    proc.join()


# ---------------------------------------------------------------- reporting


ROWS = [
    ("rtt_p50_us", "round trip p50 (us)", "{:.0f}"),
    ("rtt_p99_us", "round trip p99 (us)", "{:.0f}"),
    ("cpu_us_per_command", "proxy CPU per command (us)", "{:.0f}"),
    ("concurrent_per_s", "commands/s, 16 sessions at once", "{:.0f}"),
    ("concurrent_cpu_us_per_command", "proxy CPU per command, 16 at once (us)", "{:.0f}"),
    ("sessions_per_s", "short sessions/s, full handshake", "{:.0f}"),
    ("cpu_ms_per_session", "proxy CPU per session (ms), full", "{:.2f}"),
    ("sessions_failed", "sessions failed, full handshake", "{:.0%}"),
    ("resumed_sessions_per_s", "short sessions/s, TLS resumption", "{:.0f}"),
    ("resumed_cpu_ms_per_session", "proxy CPU per session (ms), resumed", "{:.2f}"),
    ("resumed_fraction", "sessions actually resumed", "{:.0%}"),
    ("resumed_failed", "sessions failed, resumption", "{:.0%}"),
    ("bulk_mib_per_s", "bulk MiB/s (8 MiB replies)", "{:.0f}"),
    ("cpu_ms_per_mib", "proxy CPU per MiB (ms)", "{:.2f}"),
    ("pss_held_mib", "PSS with N sessions open (MiB)", "{:.1f}"),
    ("pss_before_mib", "PSS just before opening them (MiB)", "{:.1f}"),
    ("pss_start_mib", "PSS at start, before any load (MiB)", "{:.1f}"),
]
# Rows where one proxy can be called best ("*" in the table): lower is better, except rates.
BEST_MARKED = {
    "rtt_p50_us": min,
    "cpu_us_per_command": min,
    "concurrent_cpu_us_per_command": min,
    "concurrent_per_s": max,
    "cpu_ms_per_session": min,
    "resumed_cpu_ms_per_session": min,
    "cpu_ms_per_mib": min,
    "pss_held_mib": min,
    "sessions_per_s": max,
    "bulk_mib_per_s": max,
}


def median(values: list[float]) -> float:
    real = [v for v in values if v == v]
    return statistics.median(real) if real else NAN


def summarise(results: dict[str, list[Figures]]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for name, rounds in results.items():
        keys = {k for figures in rounds for k in figures.values}
        table[name] = {k: median([f.values.get(k, NAN) for f in rounds]) for k in keys}
    return table


def print_table(table: dict[str, dict[str, float]], held: int) -> None:
    names = list(table)
    width = max(len(label) for _, label, _ in ROWS) + 2
    print("".ljust(width) + "".join((n + " ").rjust(10) for n in names))
    for key, label, fmt in ROWS:
        proxies = [table[n].get(key, NAN) for n in names if n not in ("no proxy", RELAY)]
        pick = BEST_MARKED.get(key)
        real = [v for v in proxies if v == v]
        best = pick(real) if pick and len(real) > 1 else None
        cells = []
        for name in names:
            value = table[name].get(key, NAN)
            text = "-" if value != value else fmt.format(value)
            mark = "*" if name not in ("no proxy", RELAY) and value == best else " "
            cells.append((text + mark).rjust(10))
        print(label.replace("N sessions", f"{held} sessions").ljust(width) + "".join(cells))


def print_targets(table: dict[str, dict[str, float]]) -> None:
    """The gateway's targets from its issue, judged against the best peer of this run."""
    peers = [n for n in ("socat", "stunnel", "haproxy") if n in table]
    if "labgate" not in table or not peers:
        return
    ours = table["labgate"]

    def best(key: str) -> float:
        return min((table[p].get(key, NAN) for p in peers), default=NAN)

    checks = [
        (
            "CPU per session <= best peer",
            ours.get("cpu_ms_per_session", NAN),
            best("cpu_ms_per_session"),
            1.0,
        ),
        ("p50 round trip <= 1.5x best peer", ours.get("rtt_p50_us", NAN), best("rtt_p50_us"), 1.5),
        (
            "CPU per MiB <= 1.25x best peer",
            ours.get("cpu_ms_per_mib", NAN),
            best("cpu_ms_per_mib"),
            1.25,
        ),
        (
            "PSS, sessions open <= stunnel",
            ours.get("pss_held_mib", NAN),
            table.get("stunnel", {}).get("pss_held_mib", NAN),
            1.0,
        ),
    ]
    print("\nlabgate against its targets (ratio = labgate / reference):")
    for label, value, reference, limit in checks:
        ratio = value / reference if reference and reference == reference else NAN
        verdict = "n/a" if ratio != ratio else ("met" if ratio <= limit else "MISSED")
        print(f"  {label:36} ratio {ratio:6.2f}  {verdict}")


# ---------------------------------------------------------------- the audit log's own throughput


def audit_benchmark(records: int) -> dict[str, float]:
    """records/s offered to AuditLog.record(), written and fsynced, and verified afterwards."""
    from labgate.gateway.audit import AuditLog
    from labgate.gateway.auditchain import verify

    event = {
        "event": "command",
        "conn": 1234,
        "identity": "labgate:user:alice",
        "fingerprint": "sha256:" + "ab" * 32,
        "instrument": SERVER_NAME,
        "command": "FILE:READ?",
        "decision": "allowed",
        "reply": "OK",
        "latency_ms": 0.412,
    }
    with tempfile.TemporaryDirectory(prefix="labgate-audit-bench-") as tmp:
        path = Path(tmp) / "audit.jsonl"

        async def write() -> tuple[float, float]:
            log = AuditLog(path)
            await log.start()
            start = time.perf_counter()
            for i in range(records):
                log.record({**event, "conn": i})
                if i % 256 == 0:
                    await asyncio.sleep(0)  # a gateway yields between commands
            offered = time.perf_counter() - start
            await log.aclose()
            return offered, time.perf_counter() - start

        offered, durable = asyncio.run(write())
        start = time.perf_counter()
        with path.open("rb") as lines:
            result = verify(lines)
        verified = time.perf_counter() - start
        assert result.ok, result
    return {
        "record_calls_per_s": records / offered,
        "durable_records_per_s": records / durable,
        "verified_lines_per_s": records / verified,
    }


def fsync_probe(directory: Path, syncs: int = 500) -> dict[str, float]:
    """p50/p99 of appending one audit-sized line and syncing it as the audit log does
    (fdatasync), in `directory`: the floor under the gateway's durable-first round trip on this
    disk (one such sync per lone command)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sync = getattr(os, "fdatasync", os.fsync)
    times = []
    cpu0 = time.process_time()
    try:
        for _ in range(syncs):
            start = time.perf_counter_ns()
            os.write(fd, b"x" * 399 + b"\n")
            sync(fd)
            times.append((time.perf_counter_ns() - start) / 1000)
    finally:
        cpu = time.process_time() - cpu0
        os.close(fd)
        path.unlink()
    times.sort()
    return {
        "p50_us": times[len(times) // 2],
        "p99_us": times[int(len(times) * 0.99)],
        "cpu_us": cpu * 1e6 / syncs,  # mostly the kernel's: what each lone command adds
    }


# ---------------------------------------------------------------- the run


def start_backend(work: Path, bulk_size: int) -> tuple[subprocess.Popen[bytes], int]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-backend", str(bulk_size)]
    proc = spawn(argv, work / "backend.log", stdout=subprocess.PIPE)
    line = read_line(proc, timeout=30)
    if not line.strip().isdigit():
        raise RuntimeError(f"backend did not start: {(work / 'backend.log').read_text()[-500:]}")
    return proc, int(line)


def start_targets(names: list[str], work: Path, certs: Certs, backend: int) -> list[Target]:
    targets = [
        Target(name="no proxy", port=backend, tls=False, note="client -> backend, plain TCP")
    ]
    for name in names:
        if name not in ("labgate", RELAY) and shutil.which(name) is None:
            print(f"  {name}: not installed (run bench/setup.sh); left out")
            continue
        spawned = len(STARTED)
        try:
            target = PROXIES[name](work, certs, backend)
            if target.proc:
                wait_listening(target.port, target.proc)
            smoke = Session(Address(port=target.port, tls=True, certs=certs))
            smoke.request(b"POW?")
            smoke.close()
            if target.pid:
                time.sleep(0.3)
                target.pss_start_mib = tree_pss_mib(target.pid)
        except (OSError, RuntimeError, ConnectionError, ValueError, KeyError) as err:
            log = work / f"{name}.log"
            tail = log.read_text(errors="replace")[-400:].strip() if log.exists() else ""
            print(f"  {name}: not usable ({type(err).__name__}: {err}); left out. {tail}")
            for proc in STARTED[spawned:]:
                kill_tree(proc)
            continue
        print(f"  {name}: {target.note}; 127.0.0.1:{target.port}")
        targets.append(target)
    return targets


def kill_all() -> None:
    for proc in reversed(STARTED):
        kill_tree(proc)


def check_gateway_audit(targets: list[Target], work: Path) -> str:
    """Stop the gateway cleanly and verify the audit log it wrote under all that load."""
    from labgate.gateway.auditchain import verify

    gateway = next((t for t in targets if t.name == "labgate" and t.proc), None)
    if gateway is None or gateway.proc is None:
        return ""
    kill_tree(gateway.proc)  # SIGTERM first: the gateway flushes its log on a clean stop
    path = work / "audit.jsonl"
    if not path.exists():
        return "no audit log written"
    with path.open("rb") as lines:
        return verify(lines).summary()


def raise_fd_limit() -> None:
    """Hundreds of sessions need more descriptors than a soft limit of 1024 allows a proxy."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def run(args: argparse.Namespace) -> dict[str, object]:
    sizes = QUICK if args.quick else SHORT if args.short else FULL
    if args.rounds:
        sizes = Sizes(
            **{**{f: getattr(sizes, f) for f in Sizes.__dataclass_fields__}, "rounds": args.rounds}
        )
    raise_fd_limit()
    with (
        tempfile.TemporaryDirectory(prefix="labgate-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        stack.callback(kill_all)
        certs = make_certs(work)
        print(f"certificates: {certs.source}")
        _, backend_port = start_backend(work, sizes.bulk_bytes)
        print(
            f"backend: 127.0.0.1:{backend_port} (asyncio{' + uvloop' if _has_uvloop() else ''}), "
            f"bulk reply {len(bulk_reply_body(sizes.bulk_bytes))} bytes"
        )
        targets = start_targets(args.only, work, certs, backend_port)
        pool = stack.enter_context(
            ProcessPoolExecutor(
                max_workers=sizes.workers, mp_context=multiprocessing.get_context("fork")
            )
        )
        bench = Bench(sizes, certs, pool)
        results: dict[str, list[Figures]] = {t.name: [] for t in targets}
        for round_no in range(sizes.rounds):
            order = targets if round_no % 2 == 0 else targets[::-1]
            print(
                f"round {round_no + 1}/{sizes.rounds}: {', '.join(t.name for t in order)}",
                flush=True,
            )
            for target in order:
                figures = bench.measure(target)
                for error in figures.errors:
                    print(f"  {target.name}: {error}")
                results[target.name].append(figures)
        table = summarise(results)
        for target in targets:
            table[target.name]["pss_start_mib"] = target.pss_start_mib
        audit_check = check_gateway_audit(targets, work)
        fsync = fsync_probe(work)
    print(
        f"\nmedians of {sizes.rounds} round(s); {sizes.workers} client processes; "
        f"{os.cpu_count()} CPUs; proxy CPU from /proc, client CPU not counted"
    )
    print_table(table, sizes.held_sessions)
    print("(* best proxy on that row; '-' where a figure does not apply or most sessions failed)")
    print(
        f"fdatasync of one appended 400-byte line, same disk as the audit log: "
        f"p50 {fsync['p50_us']:.0f} us, p99 {fsync['p99_us']:.0f} us, "
        f"CPU {fsync['cpu_us']:.0f} us each"
    )
    print_targets(table)
    if audit_check:
        print(f"\nlabgate's audit log of this run, after a clean stop: {audit_check}")
    audit = audit_benchmark(5_000 if args.quick else 50_000)
    print(
        "\naudit log (AuditLog, batch 64, fsync per batch): "
        f"record() {audit['record_calls_per_s']:.0f}/s, "
        f"written and fsynced {audit['durable_records_per_s']:.0f}/s, "
        f"verified {audit['verified_lines_per_s']:.0f} lines/s"
    )
    return {
        "sizes": {f: getattr(sizes, f) for f in Sizes.__dataclass_fields__},
        "targets": {t.name: t.note for t in targets},
        "rounds": {n: [f.values for f in r] for n, r in results.items()},
        "errors": {n: [e for f in r for e in f.errors] for n, r in results.items()},
        "medians": table,
        "audit": audit,
        "fsync": fsync,
    }


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so that every started process is killed on the way out."""
    raise KeyboardInterrupt


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-backend":
        serve_backend(int(sys.argv[2]))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "--serve-relay":
        serve_relay(int(sys.argv[2]), *sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke run")
    parser.add_argument(
        "--short",
        action="store_true",
        help="one round, full round trips and 500 held sessions, fewer short sessions and bulk",
    )
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 3, quick 1)")
    parser.add_argument(
        "--only",
        type=lambda s: [x for x in s.split(",") if x],
        default=list(PROXIES),
        help=f"comma-separated proxies to run (default: socat,stunnel,haproxy,labgate,{RELAY})",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    unknown = set(args.only) - set(PROXIES)
    if unknown:
        parser.error(f"unknown proxy {sorted(unknown)}; known: {', '.join(PROXIES)}")
    signal.signal(signal.SIGTERM, _interrupt)
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
