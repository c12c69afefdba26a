"""The control server's database tables (SQLAlchemy 2 declarative).

Everything a replica needs for correctness lives here, not in a process's memory: refresh-token
state, the access-token deny list, failed-login counters, audit events, the bundle version counter.
The Alembic migrations in `labgate.control.migrations` create exactly these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every database (SQLite stores no zone; it comes back naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; expected an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Always canonical (labgate.auth.usernames): unique here means unique under folding.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set for a one-time password (init, admin reset): the next login may only change it.
    one_time_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("principal", "instrument"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(200), index=True)
    instrument: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RefreshToken(Base):
    """One refresh token, stored only as its SHA-256; `used` flips once, atomically."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # The access token minted with this refresh token, so revoking the family can deny it.
    access_jti: Mapped[str] = mapped_column(String(64), index=True)
    access_expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # The session may only change its password (copied to every successor).
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    cnf_thumbprint: Mapped[str | None] = mapped_column(String(64))
    # The absolute end of the login this token belongs to (users), copied to every successor;
    # None: rotation and revocation alone decide (devices).
    session_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    successor_id: Mapped[int | None] = mapped_column(Integer)
    # The successor pair sealed with a key derived from this token: only its holder can open it,
    # within the grace window, and the database never holds a usable token in clear.
    successor_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)


class DeniedToken(Base):
    """An access token revoked before its expiry; kept until it would have expired anyway."""

    __tablename__ = "denied_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class FailedLogins(Base):
    """Consecutive failed logins for one key: `account:<name>` or `address:<peer ip>`."""

    __tablename__ = "failed_logins"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="{}")


class IssuedCertificate(Base):
    """A certificate the control server knows: issued through the API, or by the CA on disk and
    recorded here when it was revoked. The database, not the CA's own inventory file, is what
    every replica reads, so a revocation here is refused everywhere at once.

    `serial` is the decimal serial number; `thumbprint` the SHA-256 of its DER (RFC 8705
    `x5t#S256`), what a token bound to it carries.
    """

    __tablename__ = "issued_certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    thumbprint: Mapped[str | None] = mapped_column(String(64), index=True)
    issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    profile: Mapped[str | None] = mapped_column(String(16))


class Counter(Base):
    """A named counter that only grows, bumped in one UPDATE: `bundle` (the version of each
    bundle issued) and `changes` (one step per change of who may do what)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class DiscoveryPresence(Base):
    """One agent start announcing itself for linking on the local network (seed 004).

    Keyed by the agent's random per-start instance id; `public_address` is where its last
    announcement came from (the socket peer, or the first untrusted hop behind a listed proxy).
    Only the SHA-256 of its announce token is kept. `ended` names why discovery is over for this
    start (`secret_mismatch`, `already_linked`), None while it runs.
    """

    __tablename__ = "discovery_presence"

    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    public_address: Mapped[str] = mapped_column(String(64), index=True)
    local_address: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    announcements: Mapped[int] = mapped_column(Integer, default=1)
    # A link request holds the presence until its verification expires: taken by one
    # conditional UPDATE, so of parallel requests exactly one is queued.
    link_pending_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended: Mapped[str | None] = mapped_column(String(32))


class LinkVerification(Base):
    """A link asked for from a browser, waiting for its agent to check the secret.

    The secret itself is never stored: `proof` is HMAC-SHA256 keyed by it over this row's ids
    (`labgate.auth.linkproof`), which the agent recomputes with its own secret. `state` moves
    once, by compare-and-set: queued/delivered -> linked | refused.
    """

    __tablename__ = "link_verifications"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str] = mapped_column(String(40))
    proof: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DeviceCode(Base):
    """An RFC 8628 device authorisation: the device code only as SHA-256, the user code as its
    first half (`selector`, which names the code) and the SHA-256 of the whole.

    `state`: pending -> approved | denied -> redeemed, each step one conditional UPDATE.
    """

    __tablename__ = "device_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    selector: Mapped[str] = mapped_column(String(8), index=True)
    user_code_hash: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(64))
    local_address: Mapped[str | None] = mapped_column(String(64))
    public_address: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))
    wrong_entries: Mapped[int] = mapped_column(Integer, default=0)
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    interval: Mapped[int] = mapped_column(Integer)
    last_polled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class ConsoleSession(Base):
    """A person's login to the web console, kept in the database so that every replica agrees.

    The cookie holds a random token; only its SHA-256 is stored (`id`). `csrf` is the session's
    synchronizer token, which every form it posts must carry. `restricted`: the session may only
    change its password. The session ends `expires_at` (absolute) or after the idle timeout.
    """

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AcmeNonce(Base):
    """An ACME anti-replay nonce handed out and not used yet; deleted when used (once)."""

    __tablename__ = "acme_nonces"

    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AcmeExternalKey(Base):
    """An external account binding credential made by an administrator (RFC 8555 7.3.4).

    The HMAC key is kept sealed (AES-256-GCM under a key derived from the server's key
    passphrase, the key id as associated data): verifying a binding needs the key itself, so a
    hash would not do; the database alone never yields it. `account_id` is set by the first
    account it binds, after which it binds no other. `dns_suffixes` and `ip_ranges` (JSON
    lists) are the names the bound account may order.
    """

    __tablename__ = "acme_external_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str] = mapped_column(String(100))
    dns_suffixes: Mapped[str] = mapped_column(Text, default="[]")
    ip_ranges: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    account_id: Mapped[str | None] = mapped_column(String(64), unique=True)


class AcmeAccount(Base):
    """An ACME account: its key (the canonical JWK and its RFC 7638 thumbprint) and status."""

    __tablename__ = "acme_accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    jwk: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    contact: Mapped[str] = mapped_column(Text, default="[]")
    eab_kid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AcmeOrder(Base):
    """An ACME order; `identifiers` a JSON list; the certificate chain once issued."""

    __tablename__ = "acme_orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("acme_accounts.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    identifiers: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    certificate_serial: Mapped[str | None] = mapped_column(String(64), index=True)
    certificate_pem: Mapped[str | None] = mapped_column(Text)


class AcmeAuthorization(Base):
    __tablename__ = "acme_authorizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("acme_orders.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("acme_accounts.id"), index=True)
    identifier_type: Mapped[str] = mapped_column(String(8))
    identifier_value: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AcmeChallenge(Base):
    """One challenge of an authorization; `started_at` marks a validation under way."""

    __tablename__ = "acme_challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    authorization_id: Mapped[str] = mapped_column(ForeignKey("acme_authorizations.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    validated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)


# The columns the trail is filtered by, each with an index (column, at, id).
AUDIT_FILTERS = ("gateway", "event", "identity", "instrument", "command", "decision", "source")

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid that numbers itself.
_ROW_ID = BigInteger().with_variant(Integer, "sqlite")


class GatewayAuditHead(Base):
    """Where each gateway's audit chain stands on this server: the last record received.

    The next batch from that gateway must continue it: seq `seq + 1`, `prev` equal to `hash`.
    `run_seq` is the seq of the chain's last `gateway_start` (sessions are numbered per run).
    `divergence` holds the last refusal (a gap, a fork, another log) as JSON until a batch is
    accepted again; `divergence_at` when it was seen.
    """

    __tablename__ = "gateway_audit_heads"

    gateway: Mapped[str] = mapped_column(String(100), primary_key=True)
    log_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    last_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    run_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    records: Mapped[int] = mapped_column(BigInteger, default=0)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    divergence: Mapped[str | None] = mapped_column(Text)
    divergence_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class GatewayAuditRecord(Base):
    """One record of a gateway's audit log, as received: its exact line and the fields the
    trail is searched by. Every filter has an index that ends in (at, id), the order of a page.
    """

    __tablename__ = "gateway_audit_records"
    __table_args__ = (
        UniqueConstraint("gateway", "log_id", "seq"),
        Index("ix_gateway_audit_records_at", "at", "id"),
        *(Index(f"ix_gateway_audit_records_{name}", name, "at", "id") for name in AUDIT_FILTERS),
        Index("ix_gateway_audit_records_session", "session", "seq"),
    )

    id: Mapped[int] = mapped_column(_ROW_ID, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(100))
    log_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    event: Mapped[str] = mapped_column(String(64))
    identity: Mapped[str | None] = mapped_column(String(200))
    instrument: Mapped[str | None] = mapped_column(String(100))
    command: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(64))
    session: Mapped[str | None] = mapped_column(String(200))
    line: Mapped[str] = mapped_column(Text)


class DeviceGroup(Base):
    """A named set of devices that jobs and rollouts can target, owned by the user who made it."""

    __tablename__ = "device_groups"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DeviceGroupMember(Base):
    __tablename__ = "device_group_members"

    group_name: Mapped[str] = mapped_column(ForeignKey("device_groups.name"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)


class Rollout(Base):
    """One job type over a list of devices in waves (labgate.control.rollouts).

    `devices` and `waves` are JSON lists fixed at creation; `current_wave` moves by
    compare-and-set, so of two replicas' sweepers exactly one starts the next wave.
    """

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    params: Mapped[str] = mapped_column(Text)
    devices: Mapped[str] = mapped_column(Text)
    waves: Mapped[str] = mapped_column(Text)
    failure_threshold: Mapped[float] = mapped_column(Float)
    window: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    current_wave: Mapped[int] = mapped_column(Integer, default=0)
    halted_reason: Mapped[str | None] = mapped_column(String(300))
    job_seconds: Mapped[int] = mapped_column(Integer)
    in_progress_seconds: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Job(Base):
    """One job for one device (labgate.control.jobs). Every change is one conditional UPDATE
    on `version`, so a stale report, a second replica or a retried request changes nothing."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    params: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    status_details: Mapped[str | None] = mapped_column(Text)
    # What a job sends back beyond its details (collected logs), at most MAX_OUTPUT characters.
    output: Mapped[str | None] = mapped_column(Text)
    # SHA-256 of the last report applied, so the same report again is answered, not re-applied.
    last_report: Mapped[str | None] = mapped_column(String(64))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollouts.id"), index=True)
    wave: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime] = mapped_column(UtcDateTime())
    # When the job times out if nothing moves it: not_after, or sooner once it is in progress
    # (started_at + in_progress_seconds). Read and sweeper both compare only this.
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    in_progress_seconds: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
