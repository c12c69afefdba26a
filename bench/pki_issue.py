"""Benchmark labgate's CA against the `openssl` command line, in one run.

    python bench/pki_issue.py [--count 2000] [--openssl-count 100] [--revoked 100000]

Prints client certificates per second (ECDSA P-256, each with its own new key, recorded in the
SQLite inventory before it is returned) with the inventory at synchronous=FULL and NORMAL, the
same with the files written out, and the time to generate a CRL of 100,000 revoked entries. The
peer: `openssl req` + `openssl x509 -req` per certificate, and `openssl ca -gencrl` over an index
of the same 100,000 revocations.

Targets: at least 500 certificates/s; a 100,000-entry CRL in under 5 s.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from labgate.pki import CertificateAuthority, Profile
from labgate.pki.inventory import SqliteInventory

PASSPHRASE = secrets.token_urlsafe(24)
ENV = {**os.environ, "BENCH_PASS": PASSPHRASE}


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def labgate_issue_rate(
    ca_dir: Path, count: int, synchronous: str, out: Path | None, *, two_phase: bool = True
) -> float:
    """Certificates per second. Two-phase (what `labgate ca issue` does): recorded pending, files
    written, recorded issued, each record a durable commit. Without it, the second record is left
    to `close` (outside the timing), to show what the second phase costs."""
    inventory = SqliteInventory.open(ca_dir / "inventory.sqlite3", synchronous=synchronous)
    with CertificateAuthority.open(
        ca_dir, passphrase=PASSPHRASE.encode(), inventory=inventory
    ) as ca:

        def loop() -> None:
            for i in range(count):
                prefix = None if out is None else out / f"user-{i}-{synchronous}-{two_phase}"
                issued = ca.issue(Profile.CLIENT, f"user-{i}", destination=prefix)
                if prefix is not None:
                    issued.write(prefix)
                if two_phase:
                    ca.handed_out(issued)

        return count / timed(loop)


def openssl_issue_rate(ca_dir: Path, count: int, work: Path) -> float:
    extensions = work / "client.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )

    def loop() -> None:
        for i in range(count):
            key, csr, crt = (work / f"o{i}.{s}" for s in ("key", "csr", "crt"))
            run(
                "openssl",
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                key,
                "-subj",
                f"/CN=user-{i}",
                "-out",
                csr,
            )
            run(
                "openssl", "x509", "-req", "-in", csr, "-CA", ca_dir / "issuing.crt",
                "-CAkey", ca_dir / "issuing.key", "-passin", "env:BENCH_PASS",
                "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "1",
                "-extfile", extensions, "-out", crt,
            )  # fmt: skip

    return count / timed(loop)


def run(*argv: object) -> None:
    done = subprocess.run([str(a) for a in argv], capture_output=True, env=ENV, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} {argv[1]} failed: {done.stderr.decode(errors='replace')}")


def load_revocations(ca_dir: Path, count: int) -> list[tuple[int, datetime]]:
    """Bulk-load `count` revoked entries into the inventory in one transaction (setup, not timed).

    Going through `CertificateAuthority.issue` and `revoke` would take minutes of signing and two
    durable commits per entry; the CRL only reads serials, dates and reasons.
    """
    now = datetime.now(UTC)
    rows = []
    revocations = []
    for _ in range(count):
        serial = x509.random_serial_number()
        revoked_at = now - timedelta(minutes=1)
        revocations.append((serial, revoked_at))
        rows.append(
            (
                format(serial, "x"), "client", "bulk", None,
                int((now - timedelta(hours=1)).timestamp()),
                int((now + timedelta(days=1)).timestamp()),
                int(now.timestamp()), None, int(revoked_at.timestamp()), "keyCompromise", "-",
            )
        )  # fmt: skip
    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    with db:
        db.executemany(
            "INSERT INTO certificates (serial, profile, name, identity, not_before, not_after, "
            "issued_at, renewed_from, revoked_at, revocation_reason, pem) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    db.close()
    return revocations


def labgate_crl_seconds(ca_dir: Path, out: Path) -> tuple[float, int]:
    with CertificateAuthority.open(ca_dir, passphrase=PASSPHRASE.encode()) as ca:
        start = time.perf_counter()
        pem = ca.crl()
        elapsed = time.perf_counter() - start
    out.write_bytes(pem)
    entries = len(x509.load_pem_x509_crl(pem))
    return elapsed, entries


def openssl_crl_seconds(ca_dir: Path, revocations: list[tuple[int, datetime]], work: Path) -> float:
    expiry = (datetime.now(UTC) + timedelta(days=1)).strftime("%y%m%d%H%M%SZ")
    index = work / "index.txt"
    with index.open("w") as handle:
        for serial, revoked_at in revocations:
            when = revoked_at.strftime("%y%m%d%H%M%SZ")
            hex_serial = f"{serial:X}"
            hex_serial = hex_serial.zfill(len(hex_serial) + len(hex_serial) % 2)
            handle.write(f"R\t{expiry}\t{when},keyCompromise\t{hex_serial}\tunknown\t/CN=bulk\n")
    (work / "crlnumber").write_text("01\n")
    config = work / "ca.cnf"
    config.write_text(
        "[ca]\ndefault_ca = bench\n[bench]\n"
        f"database = {index}\ncrlnumber = {work / 'crlnumber'}\n"
        "default_md = sha256\ndefault_crl_hours = 24\n"
    )
    return timed(
        lambda: run(
            "openssl",
            "ca",
            "-gencrl",
            "-config",
            config,
            "-cert",
            ca_dir / "issuing.crt",
            "-keyfile",
            ca_dir / "issuing.key",
            "-passin",
            "env:BENCH_PASS",
            "-out",
            work / "openssl-crl.pem",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="certificates per labgate run")
    parser.add_argument("--openssl-count", type=int, default=100, help="certificates via openssl")
    parser.add_argument("--revoked", type=int, default=100_000, help="entries in the CRL")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="labgate-bench-") as scratch:
        work = Path(scratch)
        ca_dir = work / "ca"
        CertificateAuthority.init(ca_dir, passphrase=PASSPHRASE.encode()).close()
        (work / "files").mkdir()
        (work / "openssl").mkdir()

        print(f"client certificates, ECDSA P-256, new key each; {args.count} per labgate run")
        figures = {
            "labgate, FULL, pending row only (1 commit)": labgate_issue_rate(
                ca_dir, args.count, "FULL", None, two_phase=False
            ),
            "labgate, inventory synchronous=FULL": labgate_issue_rate(
                ca_dir, args.count, "FULL", None
            ),
            "labgate, inventory synchronous=NORMAL": labgate_issue_rate(
                ca_dir, args.count, "NORMAL", None
            ),
            "labgate, FULL, + .crt/.key written (fsync)": labgate_issue_rate(
                ca_dir, args.count, "FULL", work / "files"
            ),
            f"openssl req + openssl x509 -req ({args.openssl_count})": openssl_issue_rate(
                ca_dir, args.openssl_count, work / "openssl"
            ),
        }
        for label, rate in figures.items():
            print(f"  {label:<48} {rate:8.0f} certificates/s")

        print(f"CRL with {args.revoked} revoked entries, signed by the issuing CA")
        revocations = load_revocations(ca_dir, args.revoked)
        seconds, entries = labgate_crl_seconds(ca_dir, work / "crl.pem")
        print(f"  {'labgate ca.crl()':<48} {seconds:8.2f} s ({entries} entries)")
        peer = openssl_crl_seconds(ca_dir, revocations, work)
        print(f"  {'openssl ca -gencrl':<48} {peer:8.2f} s")


if __name__ == "__main__":
    main()
