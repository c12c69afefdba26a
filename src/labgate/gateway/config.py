"""The gateway's TOML configuration, read into frozen dataclasses and checked before starting.

Every option has its default here and in the README's table. Relative paths are taken from the
configuration file's directory, so a config and its certificates can move together. Unknown keys
are refused (a typo such as `alow_full` must not silently keep the default), and so are unsafe or
conflicting choices, each error naming the key at fault.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from labgate.gateway.errors import ConfigError, SecretFileError
from labgate.scpi.access import AccessLevel
from labgate.scpi.framing import Limits as FramingLimits

DEFAULT_LISTEN = "127.0.0.1:7443"
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
# Instrument names double as TLS server names (SNI), so they must be valid DNS labels.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A host and TCP port; port 0 asks the system for a free one."""

    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name other than localhost may resolve anywhere

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class UpstreamScheme(StrEnum):
    PLAIN = "plain"
    TLS = "tls"
    SSLV3 = "sslv3"


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    scheme: UpstreamScheme
    endpoint: Endpoint

    def __str__(self) -> str:
        return f"{self.scheme}://{self.endpoint}"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentConfig:
    """One `[[instrument]]` table."""

    name: str
    upstream: Upstream
    listen: Endpoint = field(default_factory=lambda: parse_endpoint(DEFAULT_LISTEN, "listen"))
    upstream_pin: str | None = None  # "sha256/BASE64" of the instrument's SubjectPublicKeyInfo
    password_file: Path | None = None  # None: the instrument is used without logging in
    max_upstream: int = 8  # the real instrument fails at about 30 connections
    upstream_queue: int = 64  # clients allowed to wait for a free upstream slot
    upstream_wait: float = 5.0  # seconds a client waits for a slot; below qslib's 10 s timeout
    upstream_timeout: float = 10.0  # seconds to connect, handshake, greet and log in upstream
    upstream_idle: int = 2  # logged-in connections kept warm for the next session (0: none)
    upstream_idle_timeout: float = 30.0  # seconds a warm connection may wait before it is closed


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """One `[[grant]]` table: an identity's highest level on one instrument or on all ("*")."""

    identity: str
    instrument: str
    level: AccessLevel


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionLimits:
    max_connections: int = 512  # client connections open at once, all instruments together
    max_connections_per_identity: int = 32  # per certificate identity
    handshake_timeout: float = 10.0  # seconds for the client's TLS handshake
    # TLS handshakes in progress from one source address: one host opening slow handshakes can
    # hold no more than this many of max_connections (a busy client host opens a few at once).
    max_handshakes_per_source: int = 64
    idle_timeout: float = 900.0  # seconds without a byte from either side
    max_session: float = 43200.0  # seconds a session may last at all (12 h: longer than a run)
    framing: FramingLimits = field(default_factory=FramingLimits)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlConfig:
    """Optional `[control]` table: fetch signed grant and CRL bundles from the control server."""

    url: str  # https://control.example:8443
    gateway_name: str  # our name there: the bundle's audience is labgate:gateway:<name>
    server_ca: Path  # trust anchor for the control server's certificate
    cert: Path | None = None  # client certificate towards the control server; default gateway.cert
    key: Path | None = None  # its key; default gateway.key
    poll_interval: float = 60.0  # seconds between bundle fetches
    issuer: str = "labgate:control"  # the bundle's `iss`, as the control server signs it
    cache_dir: Path = Path("control-cache")  # last accepted version and the bundle's CRL


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    cert: Path
    key: Path
    client_ca: Path
    audit_log: Path
    instruments: tuple[InstrumentConfig, ...]
    grants: tuple[Grant, ...] = ()
    crl: Path | None = None
    metrics_listen: Endpoint | None = field(
        default_factory=lambda: parse_endpoint(DEFAULT_METRICS_LISTEN, "metrics_listen")
    )
    allow_full: bool = False
    unsafe_listen: bool = False
    reload_interval: float = 0.5  # seconds between checks of the configured files for changes
    # TLS sessions kept for resumption per listener (about 12 KiB each) before the cache starts
    # afresh; see `Gateway.tls_sessions_kept`.
    tls_session_cache: int = 1024
    audit_batch_size: int = 64  # audit records written per fsync at most
    audit_flush_interval: float = 0.05  # seconds a record may wait for its batch
    limits: SessionLimits = field(default_factory=SessionLimits)
    control: ControlConfig | None = None
    source: Path | None = None  # the file this was read from; reloaded on change

    def watched_files(self) -> tuple[Path, ...]:
        """Files whose change triggers a reload (the config itself holds the grants)."""
        files = [self.cert, self.key, self.client_ca]
        files += [p for p in (self.crl, self.source) if p is not None]
        return tuple(files)


def parse_endpoint(text: object, key: str) -> Endpoint:
    if not isinstance(text, str):
        raise ConfigError(f"{key}: expected a string HOST:PORT, got {text!r}")
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if match is None:
        raise ConfigError(f"{key}: expected HOST:PORT (or [IPv6]:PORT), got {text!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ConfigError(f"{key}: port {port} is above 65535")
    return Endpoint(host=host, port=port)


def parse_pin(text: object, key: str) -> str:
    error = f"{key}: expected 'sha256/' and the base64 SHA-256 of a public key, got {text!r}"
    if not isinstance(text, str) or not text.startswith("sha256/"):
        raise ConfigError(error)
    try:
        digest = base64.b64decode(text.removeprefix("sha256/"), validate=True)
    except ValueError as exc:
        raise ConfigError(error) from exc
    if len(digest) != 32:
        raise ConfigError(error)
    return text


def read_secret(path: Path, key: str) -> bytes:
    """The contents of a password file, refusing one that others could read.

    The message names the file and its mode, never its contents.
    """
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise SecretFileError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise SecretFileError(
            f"{key}: {path} has mode {mode:04o}; it must be 0600 (readable by its owner only)"
        )
    secret = path.read_bytes().strip()
    if not secret:
        raise SecretFileError(f"{key}: {path} is empty")
    return secret


def load_config(path: Path) -> GatewayConfig:
    """Read and check a gateway configuration file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_config(raw, base=path.parent.resolve(), source=path.resolve())


def parse_config(
    raw: Mapping[str, Any], *, base: Path, source: Path | None = None
) -> GatewayConfig:
    _refuse_unknown(raw, {"gateway", "instrument", "grant", "control"}, "")
    table = _table(raw, "gateway")
    _refuse_unknown(table, _GATEWAY_KEYS, "gateway.")
    reader = _Reader(table, "gateway.", base)
    instruments = tuple(
        _instrument(item, f"instrument[{i}].", base)
        for i, item in enumerate(_array(raw, "instrument"))
    )
    if not instruments:
        raise ConfigError("instrument: at least one [[instrument]] table is needed")
    config = GatewayConfig(
        cert=reader.file("cert"),
        key=reader.file("key"),
        client_ca=reader.file("client_ca"),
        crl=reader.file("crl") if "crl" in table else None,
        audit_log=reader.path("audit_log"),
        metrics_listen=_metrics_listen(table),
        allow_full=reader.boolean("allow_full", False),
        unsafe_listen=reader.boolean("unsafe_listen", False),
        reload_interval=reader.number("reload_interval", 0.5),
        tls_session_cache=reader.count("tls_session_cache", 1024),
        audit_batch_size=int(reader.number("audit_batch_size", 64)),
        audit_flush_interval=reader.number("audit_flush_interval", 0.05),
        limits=_limits(reader),
        instruments=instruments,
        grants=tuple(_grant(g, f"grant[{i}].") for i, g in enumerate(_array(raw, "grant"))),
        control=_control(raw["control"], base) if "control" in raw else None,
        source=source,
    )
    _check(config)
    mode = config.key.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecretFileError(f"gateway.key: {config.key} has mode {mode:04o}; it must be 0600")
    return config


_GATEWAY_KEYS = {
    "cert", "key", "client_ca", "crl", "audit_log", "metrics_listen", "allow_full",
    "unsafe_listen", "reload_interval", "tls_session_cache", "audit_batch_size",
    "audit_flush_interval",
    "max_connections", "max_connections_per_identity", "handshake_timeout",
    "max_handshakes_per_source", "idle_timeout",
    "max_session", "max_line", "max_message", "max_depth",
}  # fmt: skip
_INSTRUMENT_KEYS = {
    "name", "listen", "upstream", "upstream_pin", "password_file", "max_upstream",
    "upstream_queue", "upstream_wait", "upstream_timeout", "upstream_idle",
    "upstream_idle_timeout",
}  # fmt: skip


class _Reader:
    """Typed access to one table, every error naming the full key."""

    def __init__(self, table: Mapping[str, Any], prefix: str, base: Path) -> None:
        self.table, self.prefix, self.base = table, prefix, base

    def value(self, key: str) -> Any:
        if key not in self.table:
            raise ConfigError(f"{self.prefix}{key} is required")
        return self.table[key]

    def string(self, key: str) -> str:
        value = self.value(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.prefix}{key}: expected a non-empty string, got {value!r}")
        return value

    def path(self, key: str) -> Path:
        return self.base / self.string(key)

    def file(self, key: str) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise ConfigError(f"{self.prefix}{key}: {path} does not exist or is not a file")
        return path

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.prefix}{key}: expected true or false, got {value!r}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            raise ConfigError(
                f"{self.prefix}{key}: expected a number above {minimum}, got {value!r}"
            )
        return float(value)

    def count(self, key: str, default: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{self.prefix}{key}: expected a whole number of at least 1, got {value!r}"
            )
        return value


def _refuse_unknown(table: Mapping[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown option (known: {', '.join(sorted(known))})"
        )


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}]: a table is required")
    return value


def _array(raw: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{key}: expected [[{key}]] tables")
    return value


def _metrics_listen(table: Mapping[str, Any]) -> Endpoint | None:
    value = table.get("metrics_listen", DEFAULT_METRICS_LISTEN)
    if value == "":
        return None  # metrics switched off on purpose
    return parse_endpoint(value, "gateway.metrics_listen")


def _limits(reader: _Reader) -> SessionLimits:
    default, framing = SessionLimits(), FramingLimits()
    return SessionLimits(
        max_connections=reader.count("max_connections", default.max_connections),
        max_connections_per_identity=reader.count(
            "max_connections_per_identity", default.max_connections_per_identity
        ),
        handshake_timeout=reader.number("handshake_timeout", default.handshake_timeout),
        max_handshakes_per_source=reader.count(
            "max_handshakes_per_source", default.max_handshakes_per_source
        ),
        idle_timeout=reader.number("idle_timeout", default.idle_timeout),
        max_session=reader.number("max_session", default.max_session),
        framing=FramingLimits(
            max_line=reader.count("max_line", framing.max_line),
            max_message=reader.count("max_message", framing.max_message),
            max_depth=reader.count("max_depth", framing.max_depth),
        ),
    )


def parse_upstream(text: object, key: str) -> Upstream:
    expected = "plain://HOST:PORT, tls://HOST:PORT or sslv3://HOST:PORT"
    if not isinstance(text, str) or "://" not in text:
        raise ConfigError(f"{key}: expected {expected}, got {text!r}")
    scheme, _, rest = text.partition("://")
    try:
        kind = UpstreamScheme(scheme)
    except ValueError as exc:
        raise ConfigError(f"{key}: unknown scheme {scheme!r}; expected {expected}") from exc
    return Upstream(scheme=kind, endpoint=parse_endpoint(rest, key))


def _instrument(item: Mapping[str, Any], prefix: str, base: Path) -> InstrumentConfig:
    _refuse_unknown(item, _INSTRUMENT_KEYS, prefix)
    reader = _Reader(item, prefix, base)
    name = reader.string("name")
    if not _NAME.match(name):
        raise ConfigError(f"{prefix}name: {name!r} is not a DNS label (letters, digits, '-')")
    upstream = parse_upstream(reader.value("upstream"), f"{prefix}upstream")
    pin = (
        parse_pin(item["upstream_pin"], f"{prefix}upstream_pin") if "upstream_pin" in item else None
    )
    if upstream.scheme is UpstreamScheme.PLAIN and pin is not None:
        raise ConfigError(f"{prefix}upstream_pin: a plain:// upstream has no certificate to pin")
    if upstream.scheme is not UpstreamScheme.PLAIN and pin is None:
        raise ConfigError(
            f"{prefix}upstream_pin is required for {upstream.scheme}:// "
            "(the instrument's certificate is self-signed: only its pin identifies it)"
        )
    password_file = reader.path("password_file") if "password_file" in item else None
    if password_file is not None:
        read_secret(password_file, f"{prefix}password_file")  # refuse a bad file at start
    default = InstrumentConfig(name=name, upstream=upstream)
    max_upstream = reader.count("max_upstream", default.max_upstream)
    return InstrumentConfig(
        name=name,
        listen=parse_endpoint(item.get("listen", DEFAULT_LISTEN), f"{prefix}listen"),
        upstream=upstream,
        upstream_pin=pin,
        password_file=password_file,
        max_upstream=max_upstream,
        upstream_queue=reader.count("upstream_queue", default.upstream_queue),
        upstream_wait=reader.number("upstream_wait", default.upstream_wait),
        upstream_timeout=reader.number("upstream_timeout", default.upstream_timeout),
        upstream_idle=_idle_count(reader, default.upstream_idle, max_upstream),
        upstream_idle_timeout=reader.number("upstream_idle_timeout", default.upstream_idle_timeout),
    )


def _idle_count(reader: _Reader, default: int, max_upstream: int) -> int:
    # Warm connections hold upstream slots, so there can never be more of them than slots.
    if "upstream_idle" not in reader.table:
        return min(default, max_upstream)
    value = reader.table["upstream_idle"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{reader.prefix}upstream_idle: expected a whole number of at least 0, got {value!r}"
        )
    if value > max_upstream:
        raise ConfigError(
            f"{reader.prefix}upstream_idle: {value} warm connections cannot fit in "
            f"max_upstream={max_upstream}"
        )
    return value


def _grant(item: Mapping[str, Any], prefix: str) -> Grant:
    _refuse_unknown(item, {"identity", "instrument", "level"}, prefix)
    reader = _Reader(item, prefix, Path())
    identity = reader.string("identity")
    if not identity.startswith("labgate:"):
        raise ConfigError(f"{prefix}identity: expected a labgate: URI, got {identity!r}")
    try:
        level = AccessLevel.parse(reader.string("level"))
    except ValueError as exc:
        raise ConfigError(f"{prefix}level: {exc}") from exc
    return Grant(identity=identity, instrument=reader.string("instrument"), level=level)


def _control(item: object, base: Path) -> ControlConfig:
    if not isinstance(item, dict):
        raise ConfigError("[control]: expected a table")
    known = {
        "url",
        "gateway_name",
        "server_ca",
        "cert",
        "key",
        "poll_interval",
        "issuer",
        "cache_dir",
    }
    _refuse_unknown(item, known, "control.")
    reader = _Reader(item, "control.", base)
    url = reader.string("url")
    if not url.startswith("https://"):
        raise ConfigError(f"control.url: expected an https:// URL, got {url!r}")
    return ControlConfig(
        url=url.rstrip("/"),
        gateway_name=reader.string("gateway_name"),
        server_ca=reader.file("server_ca"),
        cert=reader.file("cert") if "cert" in item else None,
        key=reader.file("key") if "key" in item else None,
        poll_interval=reader.number("poll_interval", 60.0),
        issuer=item.get("issuer", "labgate:control"),
        cache_dir=base / item.get("cache_dir", "control-cache"),
    )


def _check(config: GatewayConfig) -> None:
    """Refuse unsafe or conflicting choices, naming the option."""
    listens = [(f"instrument[{i}].listen", ins.listen) for i, ins in enumerate(config.instruments)]
    if config.metrics_listen is not None:
        listens.append(("gateway.metrics_listen", config.metrics_listen))
    for key, endpoint in listens:
        if not endpoint.is_loopback and not config.unsafe_listen:
            raise ConfigError(
                f"{key}: {endpoint} is not a loopback address; "
                "set gateway.unsafe_listen = true to listen there on purpose"
            )
    names = [ins.name for ins in config.instruments]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"instrument[{i}].name: {name!r} is used twice")
    for i, grant in enumerate(config.grants):
        if grant.instrument != "*" and grant.instrument not in names:
            raise ConfigError(
                f"grant[{i}].instrument: no instrument named {grant.instrument!r} "
                f"(known: {', '.join(names)}, or '*')"
            )
        if grant.level is AccessLevel.FULL and not config.allow_full:
            raise ConfigError(
                f"grant[{i}].level: Full access over the network needs gateway.allow_full = true"
            )
    if config.metrics_listen is not None and any(
        ins.listen == config.metrics_listen and ins.listen.port != 0 for ins in config.instruments
    ):
        raise ConfigError("gateway.metrics_listen: the same address as an instrument's listen")
