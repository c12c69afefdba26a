"""The control server's settings: one typed model, read from `DIR/server.toml`, then `LABGATE_*`.

Precedence, highest first: values given in code (command-line flags), `LABGATE_*` environment
variables, the TOML file in the data directory, the defaults below. Nothing is read at import time:
`ControlSettings.load(data_dir)` builds one per process.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from labgate.pki.keys import MIN_PASSPHRASE_LENGTH, PLACEHOLDER_PASSPHRASES
from labgate.posture.mode import PWD_ACCESS_SECONDS, PWD_IDLE_SECONDS, SecureConfig

CONFIG_FILE = "server.toml"

# Values people paste from examples are refused outright, as `labgate ca init` refuses them: one
# list, the CA's.
PLACEHOLDER_SECRETS = PLACEHOLDER_PASSPHRASES
MIN_SECRET_LENGTH = MIN_PASSPHRASE_LENGTH


class ControlSettings(BaseSettings):
    """Every option of `labgate server`; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="LABGATE_", extra="forbid", frozen=True)

    data_dir: Path
    database_url: str | None = None
    listen: str = "127.0.0.1:8443"
    # Names and addresses the server certificate made by init carries.
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    issuer: str = "labgate:control"
    audience: str = "labgate:api"
    password_policy: Literal["nist", "enhanced"] = "nist"  # noqa: S105 (a policy name)
    # argon2id cost; None keeps labgate.auth's stated production parameters.
    argon2_time_cost: int | None = Field(default=None, ge=1)
    argon2_memory_kib: int | None = Field(default=None, ge=8)
    argon2_parallelism: int | None = Field(default=None, ge=1)
    # At most 24 h: a rotated-out signing key verifies for 24 h more, and no longer.
    user_access_seconds: int = Field(default=300, ge=1, le=24 * 3600)
    device_access_seconds: int = Field(default=24 * 3600, ge=1, le=24 * 3600)
    user_refresh_seconds: int = Field(default=2 * 3600, ge=1)
    device_refresh_seconds: int = Field(default=3 * 365 * 24 * 3600, ge=1)
    refresh_grace_seconds: int = Field(default=30, ge=0, le=300)
    # Absolute end of a user's login, however often it refreshes (devices: revocation only).
    user_session_max_seconds: int = Field(default=12 * 3600, ge=60)
    # The web console's server-side sessions (labgate.control.console): one ends after this long
    # without a request (at most PWD_IDLE_SECONDS under [secure] pwd), and this long after login
    # however busy it is.
    console_idle_seconds: int = Field(default=1800, ge=1, le=24 * 3600)
    console_session_seconds: int = Field(default=8 * 3600, ge=1, le=7 * 24 * 3600)
    lockout_threshold: int = Field(default=100, ge=10, le=100)
    # How long a lock lasts after the failure that reached the threshold; it then ends by itself.
    lockout_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    # Slow clients (labgate.control.http.connections): from accept to the end of the headers (TLS
    # handshake included), then for the whole body; and connections one source may hold.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    http_connections_per_address: int = Field(default=64, ge=1, le=10_000)
    client_certificate_days: int = Field(default=1, ge=1, le=30)
    bundle_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    # The bundle long poll: a gateway asking "anything after change N?" is answered at once on a
    # change, or with 204 after at most this long (a gateway may ask for less).
    bundle_wait_seconds: int = Field(default=25, ge=1, le=300)
    # How often a waiting replica reads the change counter in the database (one small SELECT
    # per replica, however many gateways wait): the delay a change takes to reach a gateway.
    bundle_check_seconds: float = Field(default=0.25, ge=0.02, le=10)
    # Long polls one gateway may hold open at once; more are answered 429.
    bundle_waiters_per_gateway: int = Field(default=4, ge=1, le=64)
    # Instruments each gateway serves, by gateway name: its bundle carries grants for these (and
    # `*` grants) only. A gateway not listed gets the grants for the instruments it names itself.
    gateway_instruments: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Device linking (labgate.control.discovery, labgate.control.devicecodes). The public
    # address is the socket peer's; a forwarded header is read only from the peers listed here.
    trusted_proxies: tuple[str, ...] = ()
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    discovery_max_per_address: int = Field(default=1, ge=1, le=100)
    discovery_instances_per_address: int = Field(default=16, ge=1, le=10_000)
    discovery_presence_seconds: int = Field(default=30, ge=5, le=3600)
    discovery_lifetime_seconds: int = Field(default=900, ge=60, le=3600)
    link_verification_seconds: int = Field(default=60, ge=10, le=600)
    device_code_seconds: int = Field(default=900, ge=60, le=900)
    device_code_interval_seconds: int = Field(default=5, ge=1, le=60)
    device_codes_per_address: int = Field(default=10, ge=1, le=10_000)
    device_code_wrong_per_address: int = Field(default=10, ge=1, le=1000)
    device_code_wrong_per_account: int = Field(default=20, ge=1, le=1000)
    device_code_wrong_window_seconds: int = Field(default=900, ge=60, le=24 * 3600)
    # Jobs (labgate.control.jobs): how often an agent should ask for its next job, how long a
    # job may wait by default and at most, how long it may run, and how often the sweeper looks.
    jobs_poll_seconds: int = Field(default=60, ge=1, le=3600)
    jobs_default_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=30 * 24 * 3600)
    jobs_max_seconds: int = Field(default=30 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    jobs_in_progress_seconds: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    jobs_sweep_seconds: float = Field(default=15.0, ge=0.1, le=3600)
    # Certificates the server issues to itself (init, renewal) and to gateways renewing theirs
    # (`POST /api/v1/gateways/{name}/certificates`); each renews at 2/3 of its lifetime.
    server_certificate_seconds: int = Field(default=90 * 86400, ge=60, le=825 * 86400)
    gateway_certificate_seconds: int = Field(default=90 * 86400, ge=60, le=825 * 86400)
    # How often a running server looks at its certificate files: to renew when due, and to serve
    # a certificate replaced on disk (by a renewal in another replica, or by an operator).
    certificate_check_seconds: float = Field(default=5.0, ge=0.05, le=3600)
    # Encrypts the CA's keys and the token signing keys; by default a random one written by init.
    key_passphrase: SecretStr | None = None
    key_passphrase_file: Path | None = None
    # Signed releases (labgate.control.releases): the repository served at /tuf/ (none: not
    # served), the online key that re-signs its timestamp and snapshot (none: serve only), that
    # key's passphrase file (none: the server's key passphrase), how old a timestamp may get
    # before it is re-signed, and how often that is checked.
    releases_dir: Path | None = None
    releases_online_key: Path | None = None
    releases_online_passphrase_file: Path | None = None
    releases_timestamp_every_seconds: int = Field(default=3600, ge=60, le=12 * 3600)
    releases_check_seconds: float = Field(default=60.0, ge=0.05, le=3600)
    # The enhanced-security mode (labgate.posture.mode); no [secure] table: off, as it was.
    secure: SecureConfig = SecureConfig.from_table(None)
    # ACME (labgate.control.acme). Accounts need an external account binding made by an
    # administrator unless this is set; without one an account may order any name.
    acme_unsafe_eab_optional: bool = False
    # The URL clients reach the server at (`https://ca.lab.example:8443`); None: the scheme and
    # Host of each request. Every URL in the directory, and every JWS `url`, is checked against it.
    acme_base_url: str | None = Field(default=None, pattern=r"^https://[^/?#\s]+$")
    # Where validation connects: the port of http-01 and of tls-alpn-01 on the named host.
    acme_http_port: int = Field(default=80, ge=1, le=65535)
    acme_tls_alpn_port: int = Field(default=443, ge=1, le=65535)
    # Connect and read, each; a validation never waits longer than twice this in all.
    acme_validation_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Addresses to validate a name at instead of asking DNS, by name (a lab without DNS, or a
    # test on loopback). A name listed here is never looked up.
    acme_static_hosts: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    acme_orders_per_hour: int = Field(default=300, ge=1, le=100_000)
    acme_certificate_days: int = Field(default=90, ge=1, le=397)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        data_dir = getattr(init_settings, "init_kwargs", {}).get("data_dir")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if data_dir is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, Path(data_dir) / CONFIG_FILE))
        return tuple(sources)

    @classmethod
    def load(cls, data_dir: Path, **overrides: Any) -> ControlSettings:
        """Settings for the server in `data_dir`; `overrides` (flags) win over everything else."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return cls(data_dir=Path(data_dir), **given)

    @field_validator("key_passphrase")
    @classmethod
    def _refuse_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"key_passphrase is a placeholder or shorter than {MIN_SECRET_LENGTH} characters;"
                " set a real secret (or leave it unset to use the file written by init)"
            )
        return value

    @field_validator("secure", mode="before")
    @classmethod
    def _secure_table(cls, value: object) -> object:
        # As the gateway reads it: `present` is not a key of the file.
        return SecureConfig.from_table(value) if isinstance(value, dict) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies entry {entry!r} is not an address or CIDR network"
                ) from None
        return value

    @field_validator("acme_static_hosts")
    @classmethod
    def _static_hosts_are_addresses(
        cls, value: dict[str, tuple[str, ...]]
    ) -> dict[str, tuple[str, ...]]:
        for name, addresses in value.items():
            for address in addresses:
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    raise ValueError(
                        f"acme_static_hosts[{name!r}] entry {address!r} is not an IP address"
                    ) from None
        return {name.lower().rstrip("."): addresses for name, addresses in value.items()}

    @field_validator("listen")
    @classmethod
    def _listen_has_port(cls, value: str) -> str:
        host_and_port(value)
        return value

    @model_validator(mode="after")
    def _refresh_outlives_access(self) -> ControlSettings:
        if self.user_refresh_seconds <= self.user_access_seconds:
            raise ValueError("user_refresh_seconds must be longer than user_access_seconds")
        if self.user_session_max_seconds <= self.user_access_seconds:
            raise ValueError("user_session_max_seconds must be longer than user_access_seconds")
        return self

    @model_validator(mode="after")
    def _listen_only_where_configured(self) -> ControlSettings:
        if self.secure.fw:
            host, _ = host_and_port(self.listen)
            try:
                every = ipaddress.ip_address(host).is_unspecified
            except ValueError:
                every = False
            if every:
                raise ValueError(
                    f"listen {self.listen!r} is every address, which [secure] fw refuses; "
                    "name the address to listen on"
                )
        return self

    @property
    def policy_in_force(self) -> Literal["nist", "enhanced"]:
        """`password_policy`, or the enhanced one while [secure] pwd is on."""
        return "enhanced" if self.secure.pwd else self.password_policy

    @property
    def user_access_in_force(self) -> int:
        """Seconds a user's access token lasts: at most PWD_ACCESS_SECONDS under pwd."""
        if self.secure.pwd:
            return min(self.user_access_seconds, PWD_ACCESS_SECONDS)
        return self.user_access_seconds

    @property
    def user_refresh_in_force(self) -> int:
        """Seconds a user's login may sit idle: each refresh token lasts this long, and a login
        not refreshed within it ends (at most PWD_IDLE_SECONDS under pwd)."""
        if self.secure.pwd:
            return min(self.user_refresh_seconds, PWD_IDLE_SECONDS)
        return self.user_refresh_seconds

    @property
    def console_idle_in_force(self) -> int:
        """Seconds a console session may sit idle: at most PWD_IDLE_SECONDS under pwd."""
        if self.secure.pwd:
            return min(self.console_idle_seconds, PWD_IDLE_SECONDS)
        return self.console_idle_seconds

    @property
    def resolved_database_url(self) -> str:
        """The database URL in use: the configured one, or SQLite in the data directory."""
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'labgate.db'}"

    @property
    def passphrase_path(self) -> Path:
        return self.key_passphrase_file or self.data_dir / "secrets" / "key-passphrase"


def normalise_database_url(url: str) -> str:
    """Send plain `postgresql://` URLs to the psycopg 3 driver, which is the one installed."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def host_and_port(listen: str) -> tuple[str, int]:
    """Split `HOST:PORT` (`[::1]:8443` for IPv6); ValueError names the text when it is not one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {listen!r} is not HOST:PORT (for example 127.0.0.1:8443)")
    return host.strip("[]"), int(port)
