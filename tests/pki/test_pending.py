"""Two-phase issuance: pending until handed out; what a killed process left is swept and revoked."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from labgate.pki import CertificateAuthority, Profile, SqliteInventory
from labgate.pki.inventory import SCHEMA_VERSION

PASS = "a long and test-only passphrase"


def _labgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labgate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "LABGATE_CA_PASSPHRASE": PASS, **(env or {})},
        timeout=120,
        check=False,
    )


def _raw_rows(ca_dir: Path) -> list[dict[str, object]]:
    """The inventory as it is on disk, read without the sweep that labgate runs on opening it."""
    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM certificates")]
    finally:
        db.close()


def _leftovers(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.name.endswith(".tmp"))


def test_an_issuance_is_pending_until_handed_out(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue(Profile.CLIENT, "alice", destination=tmp_path / "alice")
    now = datetime.now(UTC)
    entry = ca.inventory.get(issued.serial)
    assert entry is not None and entry.status(now) == "pending"
    with ca.handing_out(issued):
        issued.write(tmp_path / "alice")
    entry = ca.inventory.get(issued.serial)
    assert entry is not None and entry.status(now) == "valid"


def test_a_hand_out_that_fails_revokes_the_certificate(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = ca.issue(Profile.CLIENT, "alice", destination=tmp_path / "nowhere" / "alice")
    with pytest.raises(FileNotFoundError), ca.handing_out(issued):
        issued.write(tmp_path / "nowhere" / "alice")  # no such directory
    entry = ca.inventory.get(issued.serial)
    assert entry is not None and entry.status(datetime.now(UTC)) == "failed"
    crl = x509.load_pem_x509_crl(ca.crl())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None


def test_a_ca_left_by_an_exception_takes_what_it_holds_pending_as_failed(
    ca_dir: Path, passphrase: bytes
) -> None:
    with (
        pytest.raises(RuntimeError),
        CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca,
    ):
        issued = ca.issue(Profile.CLIENT, "alice")
        raise RuntimeError("the caller failed before handing it out")
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as again:
        entry = again.inventory.get(issued.serial)
    assert entry is not None and entry.state == "failed" and entry.revoked_at is not None


def test_a_live_issuance_in_another_process_is_not_swept(
    ca: CertificateAuthority, ca_dir: Path, passphrase: bytes
) -> None:
    issued = ca.issue(Profile.CLIENT, "alice")
    # Another opener (a second process would see the same lock) sweeps, and must leave it alone.
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as other:
        assert other.sweep() == []
        entry = other.inventory.get(issued.serial)
        assert entry is not None and entry.state == "pending"
    listed = _labgate("ca", "list", "--dir", str(ca_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [r for r in json.loads(listed.stdout) if r["name"] == "alice"]
    assert row["status"] == "pending"
    ca.handed_out(issued)
    assert (ca.inventory.get(issued.serial) or issued).state == "issued"  # type: ignore[union-attr]


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from labgate.pki import CertificateAuthority, Profile
from labgate.pki.atomic import PRIVATE, temporary_name

ca_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
ca = CertificateAuthority.open(ca_dir, passphrase=os.environ["LABGATE_CA_PASSPHRASE"].encode())
issued = ca.issue(Profile.CLIENT, "mallory", destination=out)
# The key's temporary file is written, not yet renamed: the moment a kill leaves a key behind.
name = temporary_name(out.name + ".key", issued.lease)
fd = os.open(out.parent / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
os.write(fd, issued.key_pem)
print(format(issued.serial, "x"), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_command_sweeps_what_a_killed_issuance_left(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # Somebody else's temporary file in the same directory is not the sweep's to remove.
    unrelated = out / ".notes.txt.0123456789abcdef.tmp"
    unrelated.write_text("mine")
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_MID_WRITE), str(ca_dir), str(out / "m")],
        capture_output=True,
        text=True,
        env={**os.environ, "LABGATE_CA_PASSPHRASE": PASS},
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    serial = killed.stdout.strip()
    (row,) = [r for r in _raw_rows(ca_dir) if r["serial"] == serial]
    assert row["state"] == "pending"
    key_leftovers = [p for p in _leftovers(out) if ".key." in p.name]
    assert len(key_leftovers) == 1
    assert stat.S_IMODE(key_leftovers[0].stat().st_mode) & 0o077 == 0

    listed = _labgate("ca", "list", "--dir", str(ca_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    (seen,) = [r for r in json.loads(listed.stdout) if r["serial"] == serial]
    assert seen["status"] == "orphaned"
    assert seen["revocation_reason"] == "cessationOfOperation"
    assert _leftovers(out) == [unrelated]
    assert list((ca_dir / "leases").iterdir()) == []
    crl = _labgate("ca", "crl", "--dir", str(ca_dir), "--out", str(tmp_path / "ca.crl"))
    assert crl.returncode == 0, crl.stderr
    revoked = x509.load_pem_x509_crl((tmp_path / "ca.crl").read_bytes())
    assert revoked.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def test_an_inventory_of_schema_1_is_upgraded_in_place(ca_dir: Path, passphrase: bytes) -> None:
    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    db.executescript(
        """
        DROP INDEX IF EXISTS certificates_pending;
        ALTER TABLE certificates DROP COLUMN state;
        ALTER TABLE certificates DROP COLUMN owner;
        ALTER TABLE certificates DROP COLUMN destination;
        ALTER TABLE certificates DROP COLUMN issuer;
        PRAGMA user_version = 1;
        """
    )
    db.close()
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        entries = ca.inventory.entries()
        assert entries and {e.state for e in entries} == {"issued"}
        issued = ca.issue(Profile.CLIENT, "after-upgrade")
        ca.handed_out(issued)
    inventory = SqliteInventory.open(ca_dir / "inventory.sqlite3")
    try:
        assert (inventory.get(issued.serial) or entries[0]).state == "issued"
    finally:
        inventory.close()
    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


# -- SIGKILL at varied moments ------------------------------------------------------------------

KILLS = 20
SECRET_SUFFIXES = (".key.", ".pem.", ".p12.")


class TemporaryFileWatch(threading.Thread):
    """Looks at the output directory as often as it can while issuances run: every private-key
    temporary file it ever sees must be private to its owner."""

    def __init__(self, directory: Path) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.seen: set[str] = set()
        self.exposed: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for path in self.directory.glob(".*.tmp"):
                try:
                    mode = stat.S_IMODE(path.stat().st_mode)
                except FileNotFoundError:
                    continue
                self.seen.add(path.name)
                if any(s in path.name for s in SECRET_SUFFIXES) and mode & 0o077:
                    self.exposed.append(f"{path.name} {mode:04o}")
            time.sleep(0.001)


def _issue_and_kill(ca_dir: Path, out: Path, index: int, rng: random.Random, span: float) -> int:
    prefix = out / f"user{index}"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "labgate", "ca", "issue", "--dir", str(ca_dir),
            "--profile", "client", "--name", f"user{index}", "--out", str(prefix),
            "--combined", "--p12",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LABGATE_CA_PASSPHRASE": PASS, "LABGATE_P12_PASSWORD": "p12 pass"},
    )  # fmt: skip
    if index % 2:
        # Half of them die at a random moment of their whole run ...
        time.sleep(rng.uniform(0.2, 1.1) * span)
    else:
        # ... and half just after their first file appears: in the middle of writing them.
        deadline = time.monotonic() + 10 * span
        while time.monotonic() < deadline and process.poll() is None:
            if any(p.name.startswith(f".user{index}.") for p in out.glob(".*.tmp")) or (
                prefix.with_name(prefix.name + ".key").exists()
            ):
                break
            time.sleep(0.0005)
        time.sleep(rng.uniform(0, 0.03))
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=60)


@pytest.mark.slow
def test_issuances_killed_at_varied_moments_leave_nothing_behind(
    ca_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    started = time.monotonic()
    done = _labgate(
        "ca", "issue", "--dir", str(ca_dir), "--profile", "client", "--name", "calibration",
        "--out", str(out / "calibration"), env={"LABGATE_CA_PASSPHRASE": PASS},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    span = time.monotonic() - started
    rng = random.Random(10)  # the same varied moments every run
    watch = TemporaryFileWatch(out)
    watch.start()
    statuses: dict[int, int] = {}

    def worker(indices: range) -> None:
        for index in indices:
            statuses[index] = _issue_and_kill(ca_dir, out, index, rng, span)

    def files_hold(row: dict[str, object]) -> bool:
        crt = out / f"{row['name']}.crt"
        if not crt.is_file():
            return False
        leaf = x509.load_pem_x509_certificates(crt.read_bytes())[0]
        return format(leaf.serial_number, "x") == row["serial"]

    # The moments are relative to one calibrated issuance; on a machine whose load changes under
    # the test they may all fall before or after the writes. Another round of kills then (three
    # at most), until at least one has landed mid-issuance.
    pending: set[object] = set()
    for first in range(0, 3 * KILLS, KILLS):
        # Two at a time, so an issuance also runs beside another one's sweep.
        workers = [
            threading.Thread(target=worker, args=(range(first + i, first + KILLS, 2),))
            for i in (0, 1)
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=120)
        assert len(statuses) == first + KILLS
        users = [r for r in _raw_rows(ca_dir) if str(r["name"]).startswith("user")]
        # Before any sweep: nothing is marked issued whose certificate is not on disk.
        for row in users:
            # (An inventory without states holds every row as issued.)
            if row.get("state", "issued") == "issued":
                assert files_hold(row), f"{row['name']} is marked issued; its files are not there"
        pending = {r["serial"] for r in users if r["state"] == "pending"}
        if pending:
            break
    watch.stop.set()
    watch.join(timeout=10)
    assert watch.exposed == []
    assert pending, f"no kill landed mid-issuance ({len(watch.seen)} temporary files seen)"

    listed = _labgate("ca", "list", "--dir", str(ca_dir), "--json")  # the next command
    assert listed.returncode == 0, listed.stderr
    rows = {r["serial"]: r for r in json.loads(listed.stdout) if r["name"].startswith("user")}
    assert _leftovers(out) == []
    assert list((ca_dir / "leases").iterdir()) == []
    for serial in pending:
        assert rows[serial]["status"] == "orphaned"
    for row in _raw_rows(ca_dir):
        assert row["state"] != "pending"
        if row["state"] == "issued" and str(row["name"]).startswith("user"):
            assert files_hold(row), row["name"]
    crl = _labgate("ca", "crl", "--dir", str(ca_dir), "--out", str(tmp_path / "ca.crl"))
    assert crl.returncode == 0, crl.stderr
    revoked = x509.load_pem_x509_crl((tmp_path / "ca.crl").read_bytes())
    for serial in pending:
        assert revoked.get_revoked_certificate_by_serial_number(int(str(serial), 16)) is not None


def test_a_lease_of_a_process_killed_before_its_first_row_is_removed_and_a_live_one_kept(
    ca_dir: Path, ca: CertificateAuthority
) -> None:
    from labgate.pki.pending import Lease

    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, sys\nfrom pathlib import Path\nfrom labgate.pki.pending import Lease\n"
         "Lease(Path(sys.argv[1]))\nos.kill(os.getpid(), signal.SIGKILL)", str(ca_dir)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    live = Lease(ca_dir)
    try:
        assert len(list((ca_dir / "leases").iterdir())) == 2
        ca.sweep()
        assert [p.stem for p in (ca_dir / "leases").iterdir()] == [live.token]
    finally:
        live.release()
    assert list((ca_dir / "leases").iterdir()) == []
