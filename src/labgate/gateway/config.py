"""The gateway's configuration: one typed settings model, read from TOML, then `LABGATE_GATEWAY_*`.

Precedence, highest first: `LABGATE_GATEWAY_*` environment variables, the TOML file, the defaults
below (each written once, here; the README's table repeats them). The file keeps its tables:
`[gateway]` (whose options, the session limits among them, are the model's own fields),
`[[instrument]]`, `[[grant]]`, `[control]` and `[secure]` (the enhanced-security mode,
`labgate.posture.mode`; file only). An environment variable names a `[gateway]` option
as `LABGATE_GATEWAY_<OPTION>` and a `[control]` one as `LABGATE_GATEWAY_CONTROL__<OPTION>`;
instruments and grants come from the file alone, so that who may do what is read in one place.

Relative paths, from the file or the environment, are taken from the configuration file's
directory, so a config and its certificates can move together. Unknown keys and unknown
`LABGATE_GATEWAY_*` variables are refused (a typo such as `alow_full` must not silently keep the
default), and so are unsafe or conflicting choices, each error naming the key at fault.
`load_config(path)` builds one per process, and again on every reload; nothing is read at import.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import EnvSettingsSource, SettingsError

from labgate.gateway.errors import ConfigError, SecretFileError
from labgate.posture.mode import SecureConfig
from labgate.scpi.access import AccessLevel
from labgate.scpi.framing import DEFAULT_MAX_DEPTH, DEFAULT_MAX_LINE, DEFAULT_MAX_MESSAGE
from labgate.scpi.framing import Limits as _FramingLimits

# The framing limits the configuration sets, named here for the modules that pass them on
# to an instrument's line protocol (see `protocol`) without reaching into its core.
FramingLimits = _FramingLimits

DEFAULT_LISTEN = "127.0.0.1:7443"
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
ENV_PREFIX = "LABGATE_GATEWAY_"
ENV_NESTED = "__"
# Old option names, refused with the new one named (a silently ignored old name would keep the
# default, which for these is the safe choice, but not the one the operator wrote down).
RENAMED = {"allow_full": "unsafe_allow_full"}
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

    @property
    def is_every_address(self) -> bool:
        """0.0.0.0 or ::: a listener on every interface at once."""
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

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
class SessionLimits:
    """The `[gateway]` limits a running gateway and its sessions consult (defaults: the model)."""

    max_connections: int
    max_connections_per_identity: int
    handshake_timeout: float
    client_hello_timeout: float
    max_handshakes_per_source: int
    idle_timeout: float
    max_session: float
    framing: FramingLimits


# ---------------------------------------------------------------------- value parsers


def _endpoint_text(text: object) -> Endpoint:
    if isinstance(text, Endpoint):
        return text
    if not isinstance(text, str):
        raise ValueError(f"expected a string HOST:PORT, got {text!r}")
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if match is None:
        raise ValueError(f"expected HOST:PORT (or [IPv6]:PORT), got {text!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError(f"port {port} is above 65535")
    return Endpoint(host=host, port=port)


def _upstream_text(text: object) -> Upstream:
    if isinstance(text, Upstream):
        return text
    expected = "plain://HOST:PORT, tls://HOST:PORT or sslv3://HOST:PORT"
    if not isinstance(text, str) or "://" not in text:
        raise ValueError(f"expected {expected}, got {text!r}")
    scheme, _, rest = text.partition("://")
    try:
        kind = UpstreamScheme(scheme)
    except ValueError:
        raise ValueError(f"unknown scheme {scheme!r}; expected {expected}") from None
    return Upstream(scheme=kind, endpoint=_endpoint_text(rest))


def _pin_text(text: object) -> str | None:
    if text is None:
        return None
    error = f"expected 'sha256/' and the base64 SHA-256 of a public key, got {text!r}"
    if not isinstance(text, str) or not text.startswith("sha256/"):
        raise ValueError(error)
    try:
        digest = base64.b64decode(text.removeprefix("sha256/"), validate=True)
    except ValueError:
        raise ValueError(error) from None
    if len(digest) != 32:
        raise ValueError(error)
    return text


def _keyed(parse: Callable[[object], Any], text: object, key: str) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def parse_endpoint(text: object, key: str) -> Endpoint:
    """`HOST:PORT` or `[IPv6]:PORT`; ConfigError naming `key` when it is not one."""
    return _keyed(_endpoint_text, text, key)  # type: ignore[no-any-return]


def parse_upstream(text: object, key: str) -> Upstream:
    """`plain://`, `tls://` or `sslv3://` and an endpoint; ConfigError naming `key`."""
    return _keyed(_upstream_text, text, key)  # type: ignore[no-any-return]


def parse_pin(text: object, key: str) -> str:
    """`sha256/BASE64` of a SubjectPublicKeyInfo; ConfigError naming `key`."""
    return _keyed(_pin_text, text, key)  # type: ignore[no-any-return]


def _base(info: ValidationInfo) -> Path | None:
    """The configuration file's directory, when the model is being loaded from one."""
    context = info.context
    return context.get("base") if isinstance(context, dict) else None


def _path(value: object, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    if isinstance(value, Path):
        path = value
    elif isinstance(value, str) and value:
        path = Path(value)
    else:
        raise ValueError(f"expected a non-empty string (a path), got {value!r}")
    base = _base(info)
    return path if base is None else base / path


def _file(value: object, info: ValidationInfo) -> Path | None:
    path = _path(value, info)
    # Checked when loaded from a file; a model built in code takes its paths as given.
    if path is not None and _base(info) is not None and not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    return path


def _metrics_endpoint(value: object) -> Endpoint | None:
    if value is None or value == "":
        return None  # metrics switched off on purpose
    return _endpoint_text(value)


def _not_bool(value: object) -> object:
    # TOML's true is not 1: a boolean where a number belongs is a mistake worth naming.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _level(value: object) -> AccessLevel:
    if isinstance(value, AccessLevel):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an access level name, got {value!r}")
    return AccessLevel.parse(value)


def _dns_label(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a DNS label (letters, digits, '-')")
    return name


def _labgate_uri(identity: str) -> str:
    if not identity.startswith("labgate:"):
        raise ValueError(f"expected a labgate: URI, got {identity!r}")
    return identity


def _https(url: str) -> str:
    if not url.startswith("https://"):
        raise ValueError(f"expected an https:// URL, got {url!r}")
    return url.rstrip("/")


def _invalid(key: str, text: str) -> PydanticCustomError:
    """An error found by a check across options: `key` (relative to where the check runs) is the
    option to blame, `text` follows it (": ..." or " is required ...")."""
    return PydanticCustomError("labgate_option", "{text}", {"key": key, "text": text})


AnyPath = Annotated[Path, PlainValidator(_path)]
FilePath = Annotated[Path, PlainValidator(_file)]
OptionalFile = Annotated[Path | None, PlainValidator(_file)]
OptionalPath = Annotated[Path | None, PlainValidator(_path)]
EndpointValue = Annotated[Endpoint, PlainValidator(_endpoint_text)]
MetricsEndpoint = Annotated[Endpoint | None, PlainValidator(_metrics_endpoint)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=1)]
Seconds = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
Text = Annotated[str, Field(min_length=1)]

_MODEL = ConfigDict(frozen=True, extra="forbid", validate_default=True)


# ---------------------------------------------------------------------- the tables


class InstrumentConfig(BaseModel):
    """One `[[instrument]]` table."""

    model_config = _MODEL

    name: Annotated[str, AfterValidator(_dns_label)]
    upstream: Annotated[Upstream, PlainValidator(_upstream_text)]
    listen: EndpointValue = _endpoint_text(DEFAULT_LISTEN)
    # "sha256/BASE64" of the instrument's SubjectPublicKeyInfo: required for tls and sslv3.
    upstream_pin: Annotated[str | None, PlainValidator(_pin_text)] = None
    password_file: OptionalPath = None  # None: the instrument is used without logging in
    max_upstream: Count = 8  # the real instrument fails at about 30 connections
    upstream_queue: Count = 64  # clients allowed to wait for a free upstream slot
    upstream_wait: Seconds = 5.0  # seconds a client waits for a slot; below qslib's 10 s timeout
    upstream_timeout: Seconds = 10.0  # seconds to connect, handshake, greet and log in upstream
    # Logged-in connections kept warm for the next session (0: none); at most max_upstream.
    upstream_idle: Annotated[int, BeforeValidator(_not_bool), Field(ge=0)] = 2
    upstream_idle_timeout: Seconds = 30.0  # seconds a warm connection may wait before it closes

    @model_validator(mode="wrap")
    @classmethod
    def _warm_connections_fit(cls, data: Any, handler: Callable[[Any], Self]) -> Self:
        # Warm connections hold upstream slots, so there can never be more of them than slots:
        # the default shrinks to fit, a number written down that does not fit is refused.
        model = handler(data)
        if model.upstream_idle <= model.max_upstream:
            return model
        if "upstream_idle" in model.model_fields_set:
            raise _invalid(
                "upstream_idle",
                f": {model.upstream_idle} warm connections cannot fit in "
                f"max_upstream={model.max_upstream}",
            )
        return model.model_copy(update={"upstream_idle": model.max_upstream})

    @model_validator(mode="after")
    def _pin_fits_the_scheme(self) -> Self:
        scheme = self.upstream.scheme
        if scheme is UpstreamScheme.PLAIN and self.upstream_pin is not None:
            raise _invalid("upstream_pin", ": a plain:// upstream has no certificate to pin")
        if scheme is not UpstreamScheme.PLAIN and self.upstream_pin is None:
            raise _invalid(
                "upstream_pin",
                f" is required for {scheme}:// "
                "(the instrument's certificate is self-signed: only its pin identifies it)",
            )
        return self


class Grant(BaseModel):
    """One `[[grant]]` table: an identity's highest level on one instrument or on all ("*")."""

    model_config = _MODEL

    identity: Annotated[str, AfterValidator(_labgate_uri)]
    instrument: Text
    level: Annotated[AccessLevel, PlainValidator(_level)]


class ControlConfig(BaseModel):
    """Optional `[control]` table: fetch signed grant and CRL bundles from the control server."""

    model_config = _MODEL

    url: Annotated[str, AfterValidator(_https)]  # https://control.example:8443
    gateway_name: Text  # our name there: the bundle's audience is labgate:gateway:<name>
    server_ca: FilePath  # trust anchor for the control server's certificate
    cert: OptionalFile = None  # client certificate towards the control server; default gateway.cert
    key: OptionalFile = None  # its key; default gateway.key
    poll_interval: Seconds = 60.0  # seconds between bundle fetches
    issuer: Text = "labgate:control"  # the bundle's `iss`, as the control server signs it
    cache_dir: AnyPath = Path("control-cache")  # last accepted version and the bundle's CRL
    # Shipping the audit log to the control server (`labgate.gateway.shipping`).
    ship_audit: bool = True
    ship_interval: Seconds = 0.25  # seconds between looks at the log once everything is shipped
    ship_max_backoff: Seconds = 30.0  # longest wait between tries while the server fails
    ship_batch: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=1000)] = 500
    # Longest wait between attempts to renew a certificate while the server is away or refuses
    # (the waits grow from 1 s with full jitter; `labgate.gateway.renewal`).
    renew_retry_max: Seconds = 300.0


class GatewayConfig(BaseModel):
    """Every option of `labgate gateway`; the README's configuration table lists them.

    The `[gateway]` table's options are this model's own fields; `instrument`, `grant` and
    `control` are the other tables. Build it with `load_config`, which reads the file and then
    the environment through pydantic-settings' own `EnvSettingsSource`."""

    model_config = _MODEL

    cert: FilePath  # certificate chain served to clients
    key: FilePath  # its private key, mode 0600
    client_ca: FilePath  # trust anchor for client certificates
    audit_log: AnyPath
    crl: OptionalFile = None
    metrics_listen: MetricsEndpoint = _endpoint_text(DEFAULT_METRICS_LISTEN)  # None: no metrics
    unsafe_allow_full: bool = False  # Full access over the network
    unsafe_listen: bool = False  # listen addresses other than loopback
    reload_interval: Seconds = 0.5  # seconds between checks of the configured files for changes
    # TLS sessions kept for resumption per listener (about 12 KiB each) before the cache starts
    # afresh; see `Gateway.tls_sessions_kept`.
    tls_session_cache: Count = 1024
    audit_batch_size: Count = 64  # audit records written per fsync at most
    audit_flush_interval: Seconds = 0.05  # seconds a record may wait for its batch
    # Session limits (`limits`).
    max_connections: Count = 512  # client connections open at once, all instruments together
    max_connections_per_identity: Count = 32  # per certificate identity
    handshake_timeout: Seconds = 10.0  # seconds for the client's TLS handshake
    # Seconds for a new connection's whole ClientHello to arrive (a real client sends it at once;
    # 5 s leaves room for two TCP retransmissions); the handshake's own timeout follows it.
    client_hello_timeout: Seconds = 5.0
    # TLS handshakes in progress from one source address; beyond it the oldest one still without
    # a ClientHello (else the oldest) is dropped for the new one (a NAT may hide many clients).
    max_handshakes_per_source: Count = 64
    idle_timeout: Seconds = 900.0  # seconds without a byte from either side
    max_session: Seconds = 43200.0  # seconds a session may last at all (12 h: longer than a run)
    max_line: Count = DEFAULT_MAX_LINE  # the `scpi` framing limits
    max_message: Count = DEFAULT_MAX_MESSAGE
    max_depth: Count = DEFAULT_MAX_DEPTH
    # The other tables.
    instrument: tuple[InstrumentConfig, ...] = ()
    grant: tuple[Grant, ...] = ()
    control: ControlConfig | None = None
    # No [secure] table: a configuration from before the mode, which keeps what it had (off).
    secure: SecureConfig = SecureConfig.from_table(None)

    _source: Path | None = PrivateAttr(default=None)
    _limits: SessionLimits = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        # Built once: the gateway reads the limits on every connection.
        self._limits = SessionLimits(
            max_connections=self.max_connections,
            max_connections_per_identity=self.max_connections_per_identity,
            handshake_timeout=self.handshake_timeout,
            client_hello_timeout=self.client_hello_timeout,
            max_handshakes_per_source=self.max_handshakes_per_source,
            idle_timeout=self.idle_timeout,
            max_session=self.max_session,
            framing=FramingLimits(
                max_line=self.max_line, max_message=self.max_message, max_depth=self.max_depth
            ),
        )
        if isinstance(context, dict):
            self._source = context.get("source")

    @property
    def instruments(self) -> tuple[InstrumentConfig, ...]:
        return self.instrument

    @property
    def grants(self) -> tuple[Grant, ...]:
        return self.grant

    @property
    def limits(self) -> SessionLimits:
        return self._limits

    @property
    def source(self) -> Path | None:
        """The file this was read from; reloaded on change."""
        return self._source

    def watched_files(self) -> tuple[Path, ...]:
        """Files whose change triggers a reload (the config itself holds the grants)."""
        files = [self.cert, self.key, self.client_ca]
        files += [p for p in (self.crl, self.source) if p is not None]
        return tuple(files)

    @model_validator(mode="after")
    def _safe_and_consistent(self) -> Self:
        """Refuse unsafe or conflicting choices, naming the option."""
        if not self.instrument:
            raise _invalid("instrument", ": at least one [[instrument]] table is needed")
        listens = [(f"instrument[{i}].listen", ins.listen) for i, ins in enumerate(self.instrument)]
        if self.metrics_listen is not None:
            listens.append(("gateway.metrics_listen", self.metrics_listen))
        for key, endpoint in listens:
            if not endpoint.is_loopback and not self.unsafe_listen:
                raise _invalid(
                    key,
                    f": {endpoint} is not a loopback address; "
                    "set gateway.unsafe_listen = true to listen there on purpose",
                )
        if self.secure.fw:  # listen only where configured: never on every address at once
            for key, endpoint in listens:
                if endpoint.is_every_address:
                    raise _invalid(
                        key,
                        f": {endpoint} listens on every address, which [secure] fw refuses; "
                        "name the address to listen on",
                    )
        names = [ins.name for ins in self.instrument]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _invalid(f"instrument[{i}].name", f": {name!r} is used twice")
        for i, grant in enumerate(self.grant):
            if grant.instrument != "*" and grant.instrument not in names:
                raise _invalid(
                    f"grant[{i}].instrument",
                    f": no instrument named {grant.instrument!r} "
                    f"(known: {', '.join(names)}, or '*')",
                )
            if grant.level is AccessLevel.FULL and not self.unsafe_allow_full:
                raise _invalid(
                    f"grant[{i}].level",
                    ": Full access over the network needs gateway.unsafe_allow_full = true",
                )
        if self.metrics_listen is not None and any(
            ins.listen == self.metrics_listen and ins.listen.port != 0 for ins in self.instrument
        ):
            raise _invalid("gateway.metrics_listen", ": the same address as an instrument's listen")
        return self


# ---------------------------------------------------------------------- loading

_TABLES = ("instrument", "grant", "control", "secure")
GATEWAY_OPTIONS = tuple(name for name in GatewayConfig.model_fields if name not in _TABLES)
_MODELS: dict[str, type[BaseModel]] = {
    "instrument": InstrumentConfig,
    "grant": Grant,
    "control": ControlConfig,
    "secure": SecureConfig,
}


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


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and check a gateway configuration file, with `LABGATE_GATEWAY_*` from `environ`
    (the process's environment by default) over it."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    values = _from_file(raw)
    from_env = _from_environment(os.environ if environ is None else environ)
    for name, value in from_env.items():
        if name == "control" and isinstance(value, dict) and isinstance(values.get(name), dict):
            values[name] = {**values[name], **value}
        else:
            values[name] = value
    context = {"base": path.parent.resolve(), "source": path.resolve()}
    try:
        config = GatewayConfig.model_validate(values, context=context)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, from_env)) from None
    for i, instrument in enumerate(config.instruments):
        if instrument.password_file is not None:  # refuse a bad file at start, not at login
            read_secret(instrument.password_file, f"instrument[{i}].password_file")
    mode = config.key.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecretFileError(f"gateway.key: {config.key} has mode {mode:04o}; it must be 0600")
    return config


def _from_file(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The file's tables as the model's fields: `[gateway]`'s options at the top."""
    known = ("gateway", *_TABLES)
    for name in raw:
        if name not in known:
            raise ConfigError(
                f"{name}: unknown table "
                "(known: [gateway], [[instrument]], [[grant]], [control], [secure])"
            )
    gateway = raw.get("gateway")
    if not isinstance(gateway, dict):
        raise ConfigError("[gateway]: a table is required")
    for name in gateway:
        _refuse_renamed(name, f"gateway.{name}")
        if name not in GATEWAY_OPTIONS:
            raise ConfigError(
                f"gateway.{name}: unknown option (known: {', '.join(sorted(GATEWAY_OPTIONS))})"
            )
    values: dict[str, Any] = dict(gateway)
    for name in ("instrument", "grant"):
        if name in raw:
            tables = raw[name]
            if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
                raise ConfigError(f"{name}: expected [[{name}]] tables")
            values[name] = tables
    if "control" in raw:
        if not isinstance(raw["control"], dict):
            raise ConfigError("[control]: expected a table")
        values["control"] = raw["control"]
    if "secure" in raw:
        try:
            values["secure"] = SecureConfig.from_table(raw["secure"])
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"secure.{where}: {message}") from None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return values


def _refuse_renamed(name: str, where: str) -> None:
    new = RENAMED.get(name)
    if new is not None:
        raise ConfigError(f"{where}: renamed to {new}; write {new} instead")


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """`LABGATE_GATEWAY_*` values by option; an unknown variable is refused by name."""
    control_options = set(ControlConfig.model_fields)
    for variable in environ:
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        table, _, option = name.partition(ENV_NESTED)
        _refuse_renamed(name, variable)
        if name in GATEWAY_OPTIONS or name == "control":
            continue
        if table == "control" and option in control_options:
            continue
        if table in ("instrument", "grant", "secure"):
            raise ConfigError(
                f"{variable}: [[{table}]] tables come from the configuration file only"
            )
        known = ", ".join(ENV_PREFIX + option.upper() for option in GATEWAY_OPTIONS)
        raise ConfigError(
            f"{variable}: unknown option (known: {known}, "
            f"and {ENV_PREFIX}CONTROL{ENV_NESTED}<OPTION> for [control])"
        )
    source = EnvSettingsSource(
        GatewayConfig,  # type: ignore[arg-type]  # reads only the fields and their types
        case_sensitive=False,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED,
    )
    source.env_vars = {k.lower(): v for k, v in environ.items()}
    try:
        values = source()
    except SettingsError as exc:
        raise ConfigError(f"{ENV_PREFIX}*: {exc}") from None
    return {k: v for k, v in values.items() if k not in ("instrument", "grant", "secure")}


def _where(loc: tuple[int | str, ...]) -> str:
    """`('instrument', 0, 'listen')` -> `instrument[0].listen`; `('idle_timeout',)` ->
    `gateway.idle_timeout`: the key as it is spelt in the file."""
    if not loc:
        return ""
    head, *rest = loc
    text = f"gateway.{head}" if head not in _TABLES else str(head)
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _known(loc: tuple[int | str, ...]) -> str:
    if loc and loc[0] in _MODELS:
        return ", ".join(sorted(_MODELS[str(loc[0])].model_fields))
    return ", ".join(sorted(GATEWAY_OPTIONS))


def _describe(error: ValidationError, from_env: Mapping[str, Any]) -> str:
    """The first problem, as one line naming the key (and the variable, when it came from one)."""
    first = error.errors(include_url=False)[0]
    loc, kind, context = tuple(first["loc"]), first["type"], first.get("ctx") or {}
    got = repr(first.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    if kind == "labgate_option":
        prefix = _where(loc)
        key = str(context["key"])
        where = f"{prefix}.{key}" if prefix else key
        text = f"{where}{context['text']}"
    else:
        where = _where(loc)
        if kind == "missing":
            text = f"{where} is required"
        elif kind == "extra_forbidden":
            text = f"{where}: unknown option (known: {_known(loc[:-1])})"
        elif kind == "greater_than_equal":
            text = f"{where}: expected a whole number of at least {context['ge']}, got {got}"
        elif kind == "greater_than":
            text = f"{where}: expected a number above {context['gt']}, got {got}"
        elif kind.startswith("int_"):
            text = f"{where}: expected a whole number, got {got}"
        elif kind.startswith("float_"):
            text = f"{where}: expected a number, got {got}"
        elif kind.startswith("bool_"):
            text = f"{where}: expected true or false, got {got}"
        elif kind in ("value_error", "assertion_error"):
            text = f"{where}: {first['msg'].removeprefix('Value error, ')}"
        else:
            text = f"{where}: {first['msg']}, got {got}"
    given = from_env.get(str(loc[0])) if loc else None
    if loc and loc[0] == "control" and len(loc) > 1 and isinstance(given, dict):
        if loc[1] in given:
            text += f" (from {ENV_PREFIX}CONTROL{ENV_NESTED}{str(loc[1]).upper()})"
    elif given is not None:
        text += f" (from {ENV_PREFIX}{str(loc[0]).upper()})"
    return text
