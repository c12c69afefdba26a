"""Rotating the issuing CA: `openssl verify` and real TLS handshakes across the rollover, the
retired issuing CA's CRL, and a CA directory that still opens after a crash mid-rotation."""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from labgate.cli.ca import app
from labgate.pki import CertificateAuthority, Issued, Profile, SqliteInventory
from labgate.pki.authority import ISSUING_CRT, ISSUING_KEY, ROOT_CRT
from labgate.pki.inventory import SCHEMA_VERSION
from labgate.pki.tlsconfig import client_context, server_context


def openssl(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, argv)], capture_output=True, text=True, timeout=60, check=False
    )


def write_chain(tmp_path: Path, issued: Issued, name: str) -> tuple[Path, Path]:
    leaf, chain = tmp_path / f"{name}.leaf.pem", tmp_path / f"{name}.chain.pem"
    leaf.write_bytes(issued.certificate_pem)
    chain.write_bytes(issued.chain_pem)
    return leaf, chain


def verify(ca_dir: Path, leaf: Path, chain: Path, crl: Path) -> subprocess.CompletedProcess[str]:
    return openssl(
        "verify",
        "-CAfile",
        ca_dir / ROOT_CRT,
        "-untrusted",
        chain,
        "-crl_check",
        "-CRLfile",
        crl,
        leaf,
    )


def publish(ca: CertificateAuthority, path: Path) -> Path:
    path.write_bytes(ca.crl_pem_bundle())
    return path


def test_openssl_verifies_old_and_new_leaves_across_the_rollover(
    ca_dir: Path, passphrase: bytes, tmp_path: Path
) -> None:
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        old = ca.issue(Profile.CLIENT, "alice")
        ca.handed_out(old)
        old_leaf, old_chain = write_chain(tmp_path, old, "old")
        before = verify(ca_dir, old_leaf, old_chain, publish(ca, tmp_path / "before.crl"))
        assert before.returncode == 0, before.stderr + before.stdout
        root_before = (ca_dir / ROOT_CRT).read_bytes()
        retired = ca.issuing
        new_issuing = ca.rotate_issuing(passphrase=passphrase)
        assert new_issuing.serial_number != retired.serial_number
        assert new_issuing.subject != retired.subject
        new = ca.issue(Profile.CLIENT, "bob")
        ca.handed_out(new)
    # Relying parties trust the root, and it did not change.
    assert (ca_dir / ROOT_CRT).read_bytes() == root_before
    assert new.certificate.issuer == new_issuing.subject
    new_leaf, new_chain = write_chain(tmp_path, new, "new")
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        assert [c.serial_number for c in ca.retired] == [retired.serial_number]
        after = publish(ca, tmp_path / "after.crl")
        for leaf, chain in ((old_leaf, old_chain), (new_leaf, new_chain)):
            result = verify(ca_dir, leaf, chain, after)
            assert result.returncode == 0, result.stderr + result.stdout
        # Revoked after the rotation: the retired issuer's CRL says so.
        ca.revoke(old.serial, "keyCompromise")
        revoked = publish(ca, tmp_path / "revoked.crl")
        crls = {issuer.serial_number: x509.load_pem_x509_crl(pem) for issuer, pem in ca.crls()}
    result = verify(ca_dir, old_leaf, old_chain, revoked)
    assert result.returncode != 0
    assert "certificate revoked" in result.stdout + result.stderr
    assert verify(ca_dir, new_leaf, new_chain, revoked).returncode == 0
    assert crls[retired.serial_number].get_revoked_certificate_by_serial_number(old.serial)
    assert (
        crls[new_issuing.serial_number].get_revoked_certificate_by_serial_number(old.serial) is None
    )
    assert crls[retired.serial_number].issuer == retired.subject


def test_without_the_retired_issuers_crl_an_old_leaf_is_not_taken_on_trust(
    ca_dir: Path, passphrase: bytes, tmp_path: Path
) -> None:
    """A relying party given only the new issuing CA's CRL must not accept an old leaf unchecked."""
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        old = ca.issue(Profile.CLIENT, "alice")
        ca.handed_out(old)
        ca.rotate_issuing(passphrase=passphrase)
        (tmp_path / "current.crl").write_bytes(ca.crl())
    leaf, chain = write_chain(tmp_path, old, "old")
    result = verify(ca_dir, leaf, chain, tmp_path / "current.crl")
    assert result.returncode != 0
    assert "unable to get certificate CRL" in result.stdout + result.stderr


def test_the_retired_issuer_signs_no_more_leaves_and_its_crl_ends_with_its_last_leaf(
    ca_dir: Path, passphrase: bytes
) -> None:
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        # Nothing unexpired was signed by the first issuing CA: once rotated, it signs no CRL.
        ca.rotate_issuing(passphrase=passphrase)
        assert len(ca.crls()) == 1
        leaf = ca.issue(Profile.SERVER, "host", dns=["host.lab.example"])
        ca.handed_out(leaf)
        second = ca.issuing
        ca.rotate_issuing(passphrase=passphrase)
        signers = [issuer.serial_number for issuer, _ in ca.crls()]
        assert signers == [ca.issuing.serial_number, second.serial_number]
        entry = ca.inventory.get(leaf.serial)
        assert entry is not None and entry.issuer == second.serial_number


def test_the_inventory_records_the_issuer_and_revoking_an_old_certificate_by_file_works(
    ca_dir: Path, passphrase: bytes, tmp_path: Path
) -> None:
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        old = ca.issue(Profile.CLIENT, "alice")
        ca.handed_out(old)
        first = ca.issuing.serial_number
    runner = CliRunner()
    env = {"LABGATE_CA_PASSPHRASE": passphrase.decode()}
    result = runner.invoke(app, ["rotate-issuing", "--dir", str(ca_dir)], env=env)
    assert result.exit_code == 0, result.output
    assert f"retired: serial {first:x}" in result.output
    assert (ca_dir / f"issuing-{first:x}.crt").is_file()
    assert (ca_dir / f"issuing-{first:x}.key").stat().st_mode & 0o077 == 0
    cert = tmp_path / "old.crt"
    cert.write_bytes(old.certificate_pem)
    result = runner.invoke(
        app,
        ["revoke", "--dir", str(ca_dir), "--cert", str(cert), "--reason", "superseded"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "ca.crl"
    result = runner.invoke(app, ["crl", "--dir", str(ca_dir), "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert "2 CRL(s)" in result.output
    assert openssl("crl", "-in", out, "-noout").returncode == 0
    der = tmp_path / "ca.der"
    result = runner.invoke(app, ["crl", "--dir", str(ca_dir), "--out", str(der), "--der"], env=env)
    assert result.exit_code == 0, result.output
    retired_der = tmp_path / f"ca-{first:x}.der"
    listed = x509.load_der_x509_crl(retired_der.read_bytes())
    assert listed.get_revoked_certificate_by_serial_number(old.serial) is not None
    rows = json.loads(runner.invoke(app, ["list", "--dir", str(ca_dir), "--json"]).output)
    by_serial = {e["serial"]: e for e in rows}
    assert by_serial[format(old.serial, "x")]["issuer"] == format(first, "x")
    inventory = SqliteInventory.open(ca_dir / "inventory.sqlite3")
    try:
        entry = inventory.get(old.serial)
        assert entry is not None and entry.issuer == first
    finally:
        inventory.close()


def test_rotation_needs_the_root_passphrase(ca_dir: Path, passphrase: bytes) -> None:
    from labgate.pki import WrongPassphrase

    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        before = ca.issuing.serial_number
        with pytest.raises(WrongPassphrase):
            ca.rotate_issuing(passphrase=b"not the passphrase of this CA at all")
        assert ca.issuing.serial_number == before
    assert not list(ca_dir.glob("issuing-*"))


def test_a_crash_between_replacing_the_key_and_the_certificate_leaves_a_ca_that_opens(
    ca_dir: Path, passphrase: bytes
) -> None:
    old_crt = (ca_dir / ISSUING_CRT).read_bytes()
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        old_serial = ca.issuing.serial_number
        ca.rotate_issuing(passphrase=passphrase)
    # As if the process died after issuing.key was replaced, before issuing.crt was.
    (ca_dir / ISSUING_CRT).write_bytes(old_crt)
    assert (ca_dir / ISSUING_KEY).exists()
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        assert ca.issuing.serial_number == old_serial
        issued = ca.issue(Profile.CLIENT, "carol")
        ca.handed_out(issued)
        issued.certificate.verify_directly_issued_by(ca.issuing)


def test_an_inventory_of_schema_2_learns_who_signed_each_certificate(
    ca_dir: Path, passphrase: bytes
) -> None:
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        leaf = ca.issue(Profile.CLIENT, "alice")
        ca.handed_out(leaf)
        issuing, root = ca.issuing.serial_number, ca.root.serial_number
    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    db.executescript("ALTER TABLE certificates DROP COLUMN issuer; PRAGMA user_version = 2;")
    db.close()
    inventory = SqliteInventory.open(ca_dir / "inventory.sqlite3")
    try:
        entry = inventory.get(leaf.serial)
        assert entry is not None and entry.issuer == issuing
        issuing_entry = inventory.get(issuing)
        assert issuing_entry is not None and issuing_entry.issuer == root
    finally:
        inventory.close()
    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    """One real TLS handshake on loopback; None if it succeeded, else the server's error."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
            client.wrap_socket(raw, server_hostname="gw.lab.example") as tls,
        ):
            tls.recv(2)
    except (ssl.SSLError, OSError) as exc:
        errors.append(f"client: {exc}")
    thread.join(timeout=30)
    listener.close()
    return errors[0] if errors else None


def test_tls_handshakes_with_old_and_new_client_certificates_succeed_after_rotation(
    ca_dir: Path, passphrase: bytes, tmp_path: Path
) -> None:
    with CertificateAuthority.open(ca_dir, passphrase=passphrase) as ca:
        server_old = ca.issue(Profile.SERVER, "gw", dns=["gw.lab.example"])
        ca.handed_out(server_old)
        old = ca.issue(Profile.CLIENT, "alice")
        ca.handed_out(old)
        revoked = ca.issue(Profile.CLIENT, "mallory")
        ca.handed_out(revoked)
        ca.rotate_issuing(passphrase=passphrase)
        new = ca.issue(Profile.CLIENT, "bob")
        ca.handed_out(new)
        ca.revoke(revoked.serial, "keyCompromise")
        crl = publish(ca, tmp_path / "ca.crl")
    for issued, name in ((server_old, "server"), (old, "old"), (new, "new"), (revoked, "revoked")):
        issued.write(tmp_path / name)
    server = server_context(
        chain=tmp_path / "server.crt",
        key=tmp_path / "server.key",
        client_ca=ca_dir / ROOT_CRT,
        crl=crl,
    )
    for name in ("old", "new"):
        client = client_context(
            ca=ca_dir / ROOT_CRT, chain=tmp_path / f"{name}.crt", key=tmp_path / f"{name}.key"
        )
        assert _handshake(server, client) is None, name
    client = client_context(
        ca=ca_dir / ROOT_CRT, chain=tmp_path / "revoked.crt", key=tmp_path / "revoked.key"
    )
    error = _handshake(server, client)
    assert error is not None and "revoked" in error


@pytest.mark.slow  # ten processes that each load cryptography
def test_the_rollover_through_the_real_command_and_openssl(tmp_path: Path) -> None:
    """Only `labgate ca` as a process and `openssl`, as an operator would run them."""
    import os
    import sys

    env = {**os.environ, "LABGATE_CA_PASSPHRASE": "a long and test-only passphrase"}

    def labgate(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labgate", "ca", *map(str, args)],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip

    ca_dir = tmp_path / "ca"
    assert labgate("init", "--dir", ca_dir).returncode == 0
    for name in ("old", "web"):
        profile = (
            ["--profile", "server", "--dns", "web.lab.example"]
            if name == "web"
            else ["--profile", "client"]
        )
        done = labgate("issue", "--dir", ca_dir, *profile, "--name", name, "--out", tmp_path / name)
        assert done.returncode == 0, done.stderr
    rotated = labgate("rotate-issuing", "--dir", ca_dir)
    assert rotated.returncode == 0, rotated.stderr
    done = labgate("issue", "--dir", ca_dir, "--profile", "client", "--name", "new",
                   "--out", tmp_path / "new")  # fmt: skip
    assert done.returncode == 0, done.stderr
    crl = tmp_path / "ca.crl"
    assert labgate("crl", "--dir", ca_dir, "--out", crl).returncode == 0
    for name in ("old", "new"):
        crt = tmp_path / f"{name}.crt"  # leaf, then its own issuing CA
        result = verify(ca_dir, crt, crt, crl)
        assert result.returncode == 0, result.stdout + result.stderr
    assert labgate("revoke", "--dir", ca_dir, "--cert", tmp_path / "old.crt").returncode == 0
    assert labgate("crl", "--dir", ca_dir, "--out", crl).returncode == 0
    result = verify(ca_dir, tmp_path / "old.crt", tmp_path / "old.crt", crl)
    assert result.returncode != 0 and "certificate revoked" in result.stdout + result.stderr
    assert verify(ca_dir, tmp_path / "new.crt", tmp_path / "new.crt", crl).returncode == 0
    # The server certificate issued before the rotation, checked as before installing it.
    check = labgate(
        "check-chain", tmp_path / "web.crt", "--key", tmp_path / "web.key",
        "--ca", ca_dir / ROOT_CRT, "--name", "web.lab.example",
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    wrong = labgate(
        "check-chain", tmp_path / "web.crt", "--key", tmp_path / "new.key",
        "--ca", ca_dir / ROOT_CRT, "--name", "other.lab.example",
    )  # fmt: skip
    assert wrong.returncode == 1
    assert len([x for x in wrong.stdout.splitlines() if x.startswith("problem: ")]) == 2
    assert "Traceback" not in wrong.stderr
