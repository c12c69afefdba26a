"""The inventory: serials unique across real processes, nothing issued that it does not know."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from labgate.pki import (
    CertificateAuthority,
    InventoryError,
    Profile,
    SerialTaken,
    SqliteInventory,
)
from labgate.pki.inventory import Entry, Revocation

# Each child draws serials from a deliberately tiny pool shared by all children, so collisions
# between processes really happen (dozens expected) and must be resolved by the database.
CONCURRENT_CHILD = """
import json, os, random, sys
from pathlib import Path
from labgate.pki import CertificateAuthority, Profile

import time
directory, count, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
for _ in range(3000):  # start together: wait (at most 30 s) for the parent's signal file
    if (directory / "go").exists():
        break
    time.sleep(0.01)
draws = 0

def serials():
    global draws
    draws += 1
    return (1 << 64) + rng.randrange(2000)

passphrase = os.environ["LABGATE_CA_PASSPHRASE"].encode()
with CertificateAuthority.open(directory, passphrase=passphrase, serials=serials) as ca:
    issued = [ca.issue(Profile.CLIENT, f"p{seed}-{i}").serial for i in range(count)]
print(json.dumps({"serials": issued, "retries": draws - count}))
"""

CRASHING_CHILD = """
import os, sys
from pathlib import Path
from labgate.pki import CertificateAuthority, Profile

directory, out = Path(sys.argv[1]), Path(sys.argv[2])
passphrase = os.environ["LABGATE_CA_PASSPHRASE"].encode()
with CertificateAuthority.open(directory, passphrase=passphrase) as ca:
    for i in range(5000):  # bounded: the parent kills it long before
        ca.issue(Profile.CLIENT, f"u{i}").write(out / f"u{i}", combined=True)
"""


def _env(passphrase: bytes) -> dict[str, str]:
    return {**os.environ, "LABGATE_CA_PASSPHRASE": passphrase.decode()}


def test_concurrent_issuance_from_several_processes_never_repeats_a_serial(
    ca_dir: Path, passphrase: bytes
) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_CHILD, str(ca_dir), "100", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(passphrase),
        )
        for seed in range(4)
    ]
    (ca_dir / "go").touch()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
        results.append(json.loads(out))
    serials = [s for r in results for s in r["serials"]]
    assert len(serials) == 400
    assert len(set(serials)) == 400
    # The pool is small on purpose: the children did collide, and the inventory sorted it out.
    assert sum(r["retries"] for r in results) > 0
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        recorded = {e.serial for e in ca.inventory.entries() if e.profile == "client"}
    assert recorded == set(serials)


def test_a_crash_leaves_no_certificate_the_inventory_does_not_know(
    ca_dir: Path, passphrase: bytes, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CHILD, str(ca_dir), str(out)],
        env=_env(passphrase),
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(list(out.glob("*.crt"))) < 15 and time.monotonic() < deadline:
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)  # no clean-up, no atexit: a crash
    child.wait(timeout=30)
    inventory = SqliteInventory.open(ca_dir / "inventory.sqlite3")
    try:
        # Every file that holds a certificate, finished or a temporary caught mid-write.
        found = 0
        for path in out.iterdir():
            data = path.read_bytes()
            if b"BEGIN CERTIFICATE" not in data:
                continue
            try:
                cert = x509.load_pem_x509_certificates(data)[0]
            except ValueError:
                continue  # a temporary file cut short: holds no usable certificate
            found += 1
            assert inventory.get(cert.serial_number) is not None, path.name
        assert found >= 15
    finally:
        inventory.close()


def test_a_serial_source_that_keeps_colliding_is_reported_not_looped_on(
    ca_dir: Path, passphrase: bytes
) -> None:
    fixed = (1 << 70) + 12345
    with CertificateAuthority.open(ca_dir, passphrase=passphrase, serials=lambda: fixed) as ca:
        assert ca.issue(Profile.CLIENT, "first").serial == fixed
        with pytest.raises(SerialTaken, match="already taken"):
            ca.issue(Profile.CLIENT, "second")
        assert [e.name for e in ca.inventory.entries() if e.profile == "client"] == ["first"]


class RefusingInventory:
    """An inventory backend that cannot record (a full disk, a lost database connection)."""

    def __init__(self, inner: SqliteInventory) -> None:
        self.inner = inner

    def add(self, entry: Entry) -> None:
        raise InventoryError("database is unavailable")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_certificate_the_inventory_cannot_record_is_never_handed_out(
    ca_dir: Path, passphrase: bytes
) -> None:
    inner = SqliteInventory.open(ca_dir / "inventory.sqlite3")
    refusing = RefusingInventory(inner)
    with (
        CertificateAuthority.open(ca_dir, passphrase=passphrase, inventory=refusing) as ca,  # type: ignore[arg-type]
        pytest.raises(InventoryError, match="unavailable"),
    ):
        ca.issue(Profile.CLIENT, "alice")


def test_expiring_and_revoked_filters(ca: CertificateAuthority, past_ca: object) -> None:
    soon = ca.issue(Profile.CLIENT, "soon")  # 24 h
    later = ca.issue(Profile.SERVER, "later", dns=["later.example"])  # 90 days
    gone = ca.issue(Profile.CLIENT, "gone")
    for issued in (soon, later, gone):
        ca.handed_out(issued)
    ca.revoke(gone.serial, "superseded")
    now = datetime.now(UTC)
    expiring = {e.name for e in ca.inventory.entries(expiring_before=now + timedelta(days=2))}
    assert expiring == {"soon"}
    assert [e.serial for e in ca.inventory.entries(revoked=True)] == [gone.serial]
    entry = ca.inventory.get(later.serial)
    assert entry is not None and entry.status(now) == "valid"
    revoked = ca.inventory.get(gone.serial)
    assert revoked is not None and revoked.status(now) == "revoked"
    assert soon.serial != later.serial


def test_a_damaged_inventory_is_a_clear_error(ca_dir: Path, passphrase: bytes) -> None:
    (ca_dir / "inventory.sqlite3").write_bytes(b"this is not SQLite" * 300)
    for suffix in ("-wal", "-shm"):
        (ca_dir / f"inventory.sqlite3{suffix}").unlink(missing_ok=True)
    with pytest.raises(InventoryError, match="not a readable inventory"):
        CertificateAuthority.open(ca_dir, passphrase=passphrase)


def test_an_inventory_of_another_schema_version_is_refused(ca_dir: Path, passphrase: bytes) -> None:
    import sqlite3

    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(InventoryError, match="schema 99"):
        CertificateAuthority.open(ca_dir, passphrase=passphrase)


def test_the_inventory_runs_in_wal_mode(ca_dir: Path) -> None:
    import sqlite3

    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


class DictInventory:
    """Another backend for the same interface, as the control server's database would be."""

    def __init__(self) -> None:
        self.rows: dict[int, Entry] = {}
        self.crl_number = 0

    def add(self, entry: Entry) -> None:
        if entry.serial in self.rows:
            raise SerialTaken(f"serial {entry.serial:x} taken")
        self.rows[entry.serial] = entry

    def get(self, serial: int) -> Entry | None:
        return self.rows.get(serial)

    def revoke(self, serial: int, *, reason: str, when: datetime) -> Entry:
        from dataclasses import replace

        entry = replace(self.rows[serial], revoked_at=when, revocation_reason=reason)
        self.rows[serial] = entry
        return entry

    def entries(self, **filters: object) -> list[Entry]:
        return list(self.rows.values())

    def revocations(self, *, unexpired_at: datetime) -> Iterator[Revocation]:
        for e in self.rows.values():
            if e.revoked_at is not None and e.revocation_reason and e.not_after > unexpired_at:
                yield Revocation(
                    serial=e.serial, revoked_at=e.revoked_at, reason=e.revocation_reason
                )

    def settle(self, serial: int, *, state: str, when: datetime) -> Entry:
        from dataclasses import replace

        entry = replace(self.rows[serial], state=state)
        if state != "issued":
            entry = replace(entry, revoked_at=when, revocation_reason="cessationOfOperation")
        self.rows[serial] = entry
        return entry

    def pending(self) -> list[Entry]:
        return [e for e in self.rows.values() if e.state == "pending"]

    def next_crl_number(self) -> int:
        self.crl_number += 1
        return self.crl_number

    def close(self) -> None:
        pass


def test_the_authority_runs_on_any_backend_of_the_inventory_interface(
    ca_dir: Path, passphrase: bytes
) -> None:
    store = DictInventory()  # mypy checks it against the Inventory protocol at `open`
    drawn = iter([(1 << 64) + 1, (1 << 64) + 1, (1 << 64) + 2])  # the second one collides
    with CertificateAuthority.open(
        ca_dir, passphrase=passphrase, inventory=store, serials=lambda: next(drawn)
    ) as ca:
        first = ca.issue(Profile.CLIENT, "alice")
        second = ca.issue(Profile.CLIENT, "bob")
        ca.revoke(first.serial, "keyCompromise")
        crl = x509.load_pem_x509_crl(ca.crl())
    assert (first.serial, second.serial) == ((1 << 64) + 1, (1 << 64) + 2)
    assert set(store.rows) == {first.serial, second.serial}
    assert {e.state for e in store.rows.values()} == {"issued"}  # closed cleanly: handed out
    assert crl.get_revoked_certificate_by_serial_number(first.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(second.serial) is None
