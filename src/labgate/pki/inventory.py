"""The inventory: every certificate this CA signed, renewed or revoked, and the CRL counter.

`Inventory` is the small interface the authority needs; `SqliteInventory` keeps it in one SQLite
file next to the keys. The control server can implement the same interface on its own database.

Serials are unique because the database says so (a primary key), not because random numbers
rarely collide: `add` raises SerialTaken and the authority signs again with a fresh serial. Every
change is one transaction, begun IMMEDIATE so two processes never both read-then-write.

Durability: WAL with synchronous=FULL syncs the log at every commit. NORMAL syncs it only at
checkpoints: still safe when the process crashes (the log is in the OS's cache), but a power cut
or kernel crash can take back the last commits while the certificate files written after them,
fsynced, survive; the inventory would then not know a certificate that exists. FULL is the
default; NORMAL is there for bulk work where that trade is understood.

Issuance is two-phase. A certificate is recorded `pending`, with the lease of the process that
signed it (`owner`) and where it is to be written (`destination`), before a byte of it leaves
memory; it becomes `issued` once its files are in place (or its holder has it). A pending row whose
owner died is `orphaned` by the next sweep, one whose owner saw the hand-out fail is `failed`; both
are revoked at once, so no certificate the CA never saw delivered can be trusted.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from labgate.pki.errors import AlreadyRevoked, InventoryError, SerialTaken, UnknownCertificate

SCHEMA_VERSION = 3
# Version 1 had no two-phase issuance: every row it holds was handed out (or lost, unseen).
# Version 2 had one issuing CA for life: every leaf it holds was signed by the only issuing CA
# recorded, and that one by the root.
_UPGRADES = {
    1: (
        "ALTER TABLE certificates ADD COLUMN state TEXT NOT NULL DEFAULT 'issued'",
        "ALTER TABLE certificates ADD COLUMN owner TEXT",
        "ALTER TABLE certificates ADD COLUMN destination TEXT",
    ),
    2: (
        "ALTER TABLE certificates ADD COLUMN issuer TEXT",
        "UPDATE certificates SET issuer = (SELECT serial FROM certificates "
        "WHERE profile = 'issuing-ca' ORDER BY issued_at LIMIT 1) "
        "WHERE profile NOT IN ('root-ca', 'issuing-ca')",
        "UPDATE certificates SET issuer = (SELECT serial FROM certificates "
        "WHERE profile = 'root-ca' LIMIT 1) WHERE profile IN ('root-ca', 'issuing-ca')",
    ),
}
PENDING, ISSUED, FAILED, ORPHANED = "pending", "issued", "failed", "orphaned"
STATES = (PENDING, ISSUED, FAILED, ORPHANED)
# What a certificate never handed out is revoked with (RFC 5280: no longer needed).
UNDELIVERED_REASON = "cessationOfOperation"
# How long a writer waits for another process's transaction; issuing takes milliseconds.
BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One certificate as the inventory knows it."""

    serial: int
    profile: str
    name: str
    identity: str | None
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    certificate_pem: bytes
    renewed_from: int | None = None
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    state: str = ISSUED
    owner: str | None = None
    destination: str | None = None
    # The serial of the CA certificate that signed it (None: not recorded, from an older store).
    issuer: int | None = None

    def status(self, now: datetime) -> str:
        """`valid`, `expired`, `revoked`, or where a two-phase issuance stands: `pending` (being
        handed out now), `failed` or `orphaned` (never handed out, and revoked for it)."""
        if self.state in (FAILED, ORPHANED):
            return self.state
        if self.revoked_at is not None:
            return "revoked"
        if self.state == PENDING:
            return PENDING
        return "expired" if self.not_after <= now else "valid"


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    serial: int
    revoked_at: datetime
    reason: str
    # The serial of the issuing CA that signed it; None when not known (a revocation recorded
    # elsewhere), and then every live issuing CA's CRL lists it.
    issuer: int | None = None


class Inventory(Protocol):
    def add(self, entry: Entry) -> None:
        """Record a certificate; SerialTaken if its serial is already recorded."""

    def get(self, serial: int) -> Entry | None: ...

    def revoke(self, serial: int, *, reason: str, when: datetime) -> Entry:
        """Mark revoked; UnknownCertificate or AlreadyRevoked when it cannot be."""

    def entries(
        self,
        *,
        expiring_before: datetime | None = None,
        unexpired_at: datetime | None = None,
        revoked: bool = False,
    ) -> list[Entry]:
        """All entries, or those unrevoked that expire before `expiring_before`, those not
        expired at `unexpired_at`, those revoked; the filters combine."""

    def revocations(self, *, unexpired_at: datetime) -> Iterator[Revocation]:
        """Revoked certificates not yet expired at `unexpired_at` (what a CRL must list)."""

    def settle(self, serial: int, *, state: str, when: datetime) -> Entry:
        """End a pending issuance: `issued`, or `failed`/`orphaned` (which also revokes it).
        UnknownCertificate when the serial is not pending."""

    def pending(self) -> list[Entry]:
        """Every issuance still pending, oldest first."""

    def next_crl_number(self) -> int:
        """A CRL number larger than any handed out before (RFC 5280: monotonically increasing)."""

    def close(self) -> None: ...


# The serial is the primary key, so the database itself refuses a repeated one (a UNIQUE
# constraint), whichever process drew it. Serials are stored as lower-case hex: they are up to
# 159 bits, beyond SQLite's 64-bit integers.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY NOT NULL,
    profile TEXT NOT NULL,
    name TEXT NOT NULL,
    identity TEXT,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    renewed_from TEXT REFERENCES certificates (serial),
    revoked_at INTEGER,
    revocation_reason TEXT,
    pem TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'issued',
    owner TEXT,
    destination TEXT,
    issuer TEXT
);
CREATE INDEX IF NOT EXISTS certificates_revoked ON certificates (revoked_at)
    WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates (not_after);
CREATE INDEX IF NOT EXISTS certificates_pending ON certificates (owner)
    WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS crl_number (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    last INTEGER NOT NULL
);
INSERT OR IGNORE INTO crl_number (only_row, last) VALUES (1, 0);
"""

_COLUMNS = (
    "serial, profile, name, identity, not_before, not_after, issued_at, renewed_from, "
    "revoked_at, revocation_reason, pem, state, owner, destination, issuer"
)
_SELECT_ONE = f"SELECT {_COLUMNS} FROM certificates WHERE serial = ?"  # noqa: S608 (constants)


class SqliteInventory:
    """The inventory in one SQLite file, in WAL mode so readers never block the signer."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._path = path
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: Path, *, synchronous: str = "FULL") -> SqliteInventory:
        inventory = cls(_connect(path, synchronous), path)
        with inventory._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return inventory

    @classmethod
    def open(cls, path: Path, *, synchronous: str = "FULL") -> SqliteInventory:
        if not path.is_file():
            raise InventoryError(f"no inventory at {path}")
        try:
            connection = _connect(path, synchronous)
        except sqlite3.DatabaseError as exc:
            raise InventoryError(f"{path} is not a readable inventory: {exc}") from None
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION and version not in _UPGRADES:
            connection.close()
            raise InventoryError(
                f"{path} has inventory schema {version}; this labgate reads {SCHEMA_VERSION}"
            )
        inventory = cls(connection, path)
        if version != SCHEMA_VERSION:
            inventory._upgrade()
        return inventory

    def _upgrade(self) -> None:
        with self._transaction() as db:
            # Read again inside the write lock: another process may have upgraded meanwhile.
            (version,) = db.execute("PRAGMA user_version").fetchone()
            while version != SCHEMA_VERSION:
                for statement in _UPGRADES[version]:
                    db.execute(statement)
                version += 1
            db.execute(
                "CREATE INDEX IF NOT EXISTS certificates_pending ON certificates (owner) "
                "WHERE state = 'pending'"
            )
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def add(self, entry: Entry) -> None:
        try:
            with self._transaction() as db:
                db.execute(
                    f"INSERT INTO certificates ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 (fixed column list)
                    _row(entry),
                )
        except sqlite3.IntegrityError as exc:
            if "certificates.serial" in str(exc):
                raise SerialTaken(f"serial {entry.serial:x} is already in the inventory") from None
            raise

    def get(self, serial: int) -> Entry | None:
        with self._lock:
            row = self._db.execute(_SELECT_ONE, (_hex(serial),)).fetchone()
        return None if row is None else _entry(row)

    def revoke(self, serial: int, *, reason: str, when: datetime) -> Entry:
        with self._transaction() as db:
            row = db.execute(_SELECT_ONE, (_hex(serial),)).fetchone()
            if row is None:
                raise UnknownCertificate(f"serial {serial:x} is not in this CA's inventory")
            entry = _entry(row)
            if entry.revoked_at is not None:
                raise AlreadyRevoked(
                    f"serial {serial:x} was already revoked at {_iso(entry.revoked_at)} "
                    f"({entry.revocation_reason})"
                )
            db.execute(
                "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?",
                (_epoch(when), reason, _hex(serial)),
            )
        return self.get(serial) or entry

    def entries(
        self,
        *,
        expiring_before: datetime | None = None,
        unexpired_at: datetime | None = None,
        revoked: bool = False,
    ) -> list[Entry]:
        clauses: list[str] = []
        params: list[object] = []
        if expiring_before is not None:
            clauses.append("not_after <= ? AND revoked_at IS NULL")
            params.append(_epoch(expiring_before))
        if unexpired_at is not None:
            clauses.append("not_after > ?")
            params.append(_epoch(unexpired_at))
        if revoked:
            clauses.append("revoked_at IS NOT NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(
                # Only fixed clauses are joined in; every value is a bound parameter.
                f"SELECT {_COLUMNS} FROM certificates {where} ORDER BY issued_at, serial",  # noqa: S608
                params,
            ).fetchall()
        return [_entry(row) for row in rows]

    def revocations(self, *, unexpired_at: datetime) -> Iterator[Revocation]:
        with self._lock:
            rows = self._db.execute(
                "SELECT serial, revoked_at, revocation_reason, issuer FROM certificates "
                "WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY serial",
                (_epoch(unexpired_at),),
            ).fetchall()
        for serial, revoked_at, reason, issuer in rows:
            yield Revocation(
                serial=int(serial, 16),
                revoked_at=datetime.fromtimestamp(revoked_at, tz=UTC),
                reason=reason,
                issuer=None if issuer is None else int(issuer, 16),
            )

    def settle(self, serial: int, *, state: str, when: datetime) -> Entry:
        if state not in (ISSUED, FAILED, ORPHANED):
            raise ValueError(
                f"a pending issuance settles as issued, failed or orphaned, not {state}"
            )
        with self._transaction() as db:
            if state == ISSUED:
                changed = db.execute(
                    "UPDATE certificates SET state = ? WHERE serial = ? AND state = 'pending'",
                    (state, _hex(serial)),
                ).rowcount
            else:
                changed = db.execute(
                    "UPDATE certificates SET state = ?, revoked_at = COALESCE(revoked_at, ?), "
                    "revocation_reason = COALESCE(revocation_reason, ?) "
                    "WHERE serial = ? AND state = 'pending'",
                    (state, _epoch(when), UNDELIVERED_REASON, _hex(serial)),
                ).rowcount
            row = db.execute(_SELECT_ONE, (_hex(serial),)).fetchone()
        if row is None:
            raise UnknownCertificate(f"serial {serial:x} is not in this CA's inventory")
        entry = _entry(row)
        if changed != 1:
            raise UnknownCertificate(
                f"serial {serial:x} is not pending (it is {entry.state}); it cannot become {state}"
            )
        return entry

    def pending(self) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM certificates WHERE state = 'pending' "  # noqa: S608 (constants)
                "ORDER BY issued_at, serial"
            ).fetchall()
        return [_entry(row) for row in rows]

    def next_crl_number(self) -> int:
        with self._transaction() as db:
            db.execute("UPDATE crl_number SET last = last + 1 WHERE only_row = 1")
            (number,) = db.execute("SELECT last FROM crl_number WHERE only_row = 1").fetchone()
        return int(number)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error; one thread at a time."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        try:
            self._db.execute("ROLLBACK" if kind is not None else "COMMIT")
        finally:
            self._lock.release()


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    if synchronous not in {"FULL", "NORMAL"}:
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    # isolation_level=None: no implicit transactions; every change is an explicit BEGIN IMMEDIATE.
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def _row(entry: Entry) -> tuple[object, ...]:
    return (
        _hex(entry.serial),
        entry.profile,
        entry.name,
        entry.identity,
        _epoch(entry.not_before),
        _epoch(entry.not_after),
        _epoch(entry.issued_at),
        None if entry.renewed_from is None else _hex(entry.renewed_from),
        None if entry.revoked_at is None else _epoch(entry.revoked_at),
        entry.revocation_reason,
        entry.certificate_pem.decode("ascii"),
        entry.state,
        entry.owner,
        entry.destination,
        None if entry.issuer is None else _hex(entry.issuer),
    )


def _entry(row: tuple[object, ...]) -> Entry:
    serial, profile, name, ident, nb, na, issued, renewed, revoked, reason, pem = row[:11]
    state, owner, destination, issuer = row[11:]
    return Entry(
        serial=int(str(serial), 16),
        profile=str(profile),
        name=str(name),
        identity=None if ident is None else str(ident),
        not_before=_time(nb),
        not_after=_time(na),
        issued_at=_time(issued),
        renewed_from=None if renewed is None else int(str(renewed), 16),
        revoked_at=None if revoked is None else _time(revoked),
        revocation_reason=None if reason is None else str(reason),
        certificate_pem=str(pem).encode("ascii"),
        state=str(state),
        owner=None if owner is None else str(owner),
        destination=None if destination is None else str(destination),
        issuer=None if issuer is None else int(str(issuer), 16),
    )


def _hex(serial: int) -> str:
    return format(serial, "x")


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


def _time(value: object) -> datetime:
    return datetime.fromtimestamp(int(str(value)), tz=UTC)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")
