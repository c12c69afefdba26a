"""A release repository signed with real keys, and a TLS file server that can misbehave.

The server plays the network and a compromised or broken mirror: it serves the repository's
files with Range, If-Range and ETag as a web server does, counts every body byte it sends, and on
request trickles, cuts a response short, appends endless bytes or serves other bytes for a name.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from securesystemslib.signer import CryptoSigner

from labgate.agent.installation import Bundle, Online, ReleaseConfig, ReleaseInstall, install_root
from labgate.releases import keyfiles
from labgate.releases.repository import Repository
from labgate.releases.verification import Binding

MODEL = "qs5"


@dataclass
class Keys:
    root: list[CryptoSigner]
    targets: CryptoSigner
    online: CryptoSigner


def new_keys() -> Keys:
    return Keys(
        root=[keyfiles.generate() for _ in range(3)],
        targets=keyfiles.generate(),
        online=keyfiles.generate(),
    )


def make_repository(directory: Path, keys: Keys, *, now: datetime | None = None) -> Repository:
    return Repository.create(
        directory,
        root_signers=keys.root,
        root_threshold=2,
        targets_signer=keys.targets,
        online_signer=keys.online,
        now=now or datetime.now(UTC),
    )


def release(
    repo: Repository,
    keys: Keys,
    tmp: Path,
    *,
    version: str,
    data: bytes,
    models: tuple[str, ...] = (MODEL,),
    name: str | None = None,
    now: datetime | None = None,
) -> Binding:
    """Sign an artifact of `data` as `version` and publish it; the binding an install names."""
    when = now or datetime.now(UTC)
    artifact = tmp / (name or f"firmware-{version}.bin")
    artifact.write_bytes(data)
    (added,) = repo.add(
        version=version, compatible=models, artifacts=[artifact], signers=[keys.targets], now=when
    )
    repo.refresh_online(keys.online, now=when)
    return Binding(target_path=added.path, length=added.length, sha256=added.sha256)


def binding_for(data: bytes, path: str) -> Binding:
    return Binding(target_path=path, length=len(data), sha256=hashlib.sha256(data).hexdigest())


@dataclass
class Misbehaviour:
    trickle_bytes_per_second: float | None = None
    trickle_targets_only: bool = False
    cut_target_at: int | None = None  # close the first target response after this many bytes
    endless: bool = False  # append bytes without end to every response
    replace: dict[str, bytes] = field(default_factory=dict)  # file name -> other bytes
    ignore_range: bool = False


@dataclass
class Served:
    body_bytes: int = 0
    target_bytes: int = 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        world = self.server.world
        world.served.requests.append((self.path, self.headers.get("Range")))
        match = re.fullmatch(r"/tuf/(metadata|targets)/([^/]+)", self.path)
        if match is None:
            self.send_error(404)
            return
        kind, name = match[1], match[2]
        data = world.misbehaviour.replace.get(name)
        if data is None:
            path = world.directory / kind / name
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start = 0
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        ranged = (
            wanted is not None
            and not world.misbehaviour.ignore_range
            and (if_range is None or if_range == etag)
        )
        if ranged:
            assert wanted is not None
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1])  # type: ignore[index]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        endless = world.misbehaviour.endless
        if not endless:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = world.misbehaviour.cut_target_at if kind == "targets" else None
        if cut is not None:
            world.misbehaviour.cut_target_at = None
            body = body[:cut]
        self._send(body, kind)
        if endless:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if not self._send(b"\0" * 65536, kind):
                    break
        if cut is not None:
            self.close_connection = True

    def _send(self, body: bytes, kind: str) -> bool:
        world = self.server.world
        rate = world.misbehaviour.trickle_bytes_per_second
        if world.misbehaviour.trickle_targets_only and kind != "targets":
            rate = None
        step = 16 if rate else 65536
        try:
            for offset in range(0, len(body), step):
                piece = body[offset : offset + step]
                self.wfile.write(piece)
                self.wfile.flush()
                world.served.body_bytes += len(piece)
                if kind == "targets":
                    world.served.target_bytes += len(piece)
                if rate:
                    time.sleep(len(piece) / rate)
                if world.stopping.is_set():
                    return False
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return False
        return True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    world: World


@dataclass
class World:
    directory: Path
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)
    served: Served = field(default_factory=Served)
    stopping: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@contextmanager
def serve(directory: Path, tls: tuple[Path, Path]) -> Iterator[World]:
    """Serve REPO's metadata/ and targets/ at https://127.0.0.1:PORT/tuf/..."""
    cert, key = tls
    world = World(directory=directory)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.world = world
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    world.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield world
    finally:
        world.stopping.set()
        server.shutdown()
        server.server_close()


@dataclass
class Device:
    """An agent's data directory set up for releases, installing from a world or a bundle."""

    data_dir: Path
    config: ReleaseConfig
    ca: Path

    def online(self, world: World) -> Online:
        return Online(server_url=world.url, context=ssl.create_default_context(cafile=str(self.ca)))

    def install(self, binding: Binding, world: World) -> ReleaseInstall:
        return ReleaseInstall(
            data_dir=self.data_dir, config=self.config, source=self.online(world), binding=binding
        )

    def install_bundle(self, binding: Binding, bundle: Path, valid_at: datetime) -> ReleaseInstall:
        return ReleaseInstall(
            data_dir=self.data_dir,
            config=self.config,
            source=Bundle(directory=bundle, valid_at=valid_at),
            binding=binding,
        )


def provision(data_dir: Path, repo: Repository, ca: Path, **config: object) -> Device:
    settings = ReleaseConfig(model=str(config.pop("model", MODEL)), **config)  # type: ignore[arg-type]
    settings.save(data_dir)
    install_root(data_dir, repo.root_bytes())
    return Device(data_dir=data_dir, config=settings, ca=ca)
