"""`labgate ca` through Typer's runner, and once as a real subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner, Result

from labgate.cli import ca as ca_cli
from labgate.cli.app import app
from labgate.pki import CertificateAuthority, KeyType, Profile

PASS = "cli test passphrase"
ENV = {"LABGATE_CA_PASSPHRASE": PASS}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def ca_dir(tmp_path: Path, runner: CliRunner) -> Path:
    directory = tmp_path / "ca"
    result = runner.invoke(app, ["ca", "init", "--dir", str(directory)], env=ENV)
    assert result.exit_code == 0, result.output
    return directory


def run(runner: CliRunner, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return runner.invoke(app, ["ca", *args], env=ENV if env is None else env)


def test_cli_choices_match_the_library_enums() -> None:
    assert [p.value for p in ca_cli.ProfileName] == [p.value for p in Profile]
    assert [k.value for k in ca_cli.KeyTypeName] == [k.value for k in KeyType]


def test_init_writes_the_trust_anchor_and_refuses_to_overwrite(
    runner: CliRunner, ca_dir: Path
) -> None:
    assert (ca_dir / "root.crt").is_file() and (ca_dir / "issuing.crt").is_file()
    before = (ca_dir / "root.crt").read_bytes()
    again = runner.invoke(app, ["ca", "init", "--dir", str(ca_dir)], env=ENV)
    assert again.exit_code == 1
    assert "refusing to overwrite" in again.stderr
    assert (ca_dir / "root.crt").read_bytes() == before


def test_init_reads_the_passphrase_from_a_file(runner: CliRunner, tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("from a file, long enough\n")
    args = ["ca", "init", "--dir", str(tmp_path / "ca"), "--passphrase-file", str(secret)]
    assert runner.invoke(app, args, env={"LABGATE_CA_PASSPHRASE": None}).exit_code == 0
    issue = [
        "ca", "issue", "--dir", str(tmp_path / "ca"), "--profile", "client", "--name", "a",
        "--out", str(tmp_path / "a"),
    ]  # fmt: skip
    ok = runner.invoke(
        app, [*issue, "--passphrase-file", str(secret)], env={"LABGATE_CA_PASSPHRASE": None}
    )
    assert ok.exit_code == 0, ok.output
    issue[-1] = str(tmp_path / "b")
    wrong = runner.invoke(app, issue, env={"LABGATE_CA_PASSPHRASE": "from a file, long enough!"})
    assert wrong.exit_code == 1
    assert "passphrase does not decrypt" in wrong.stderr


def test_a_passphrase_is_never_taken_from_the_command_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["ca", "init", "--dir", str(tmp_path / "ca"), "--passphrase", "hunter2"], env=ENV
    )
    assert result.exit_code == 2  # no such option
    assert not (tmp_path / "ca").exists()


def test_passphrase_given_two_ways_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("x" * 20)
    result = runner.invoke(
        app,
        ["ca", "init", "--dir", str(tmp_path / "ca"), "--passphrase-file", str(secret)],
        env=ENV,
    )
    assert result.exit_code == 1
    assert "--passphrase-file and $LABGATE_CA_PASSPHRASE" in result.stderr


def test_init_without_any_passphrase_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["ca", "init", "--dir", str(tmp_path / "ca")], env={"LABGATE_CA_PASSPHRASE": None}
    )
    assert result.exit_code == 1
    assert "give a passphrase" in result.stderr


def test_unencrypted_keys_warn_loudly(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["ca", "init", "--dir", str(tmp_path / "ca"), "--unencrypted-keys"],
        env={"LABGATE_CA_PASSPHRASE": None},
    )
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.stderr and "UNENCRYPTED" in result.stderr
    assert b"ENCRYPTED" not in (tmp_path / "ca" / "issuing.key").read_bytes()


def test_issue_writes_crt_key_pem_and_p12(runner: CliRunner, ca_dir: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "alice"
    result = run(
        runner, "issue", "--dir", str(ca_dir), "--profile", "client", "--name", "alice",
        "--out", str(prefix), "--combined", "--p12",
        env={**ENV, "LABGATE_P12_PASSWORD": "p12 pass"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for suffix, mode in ((".crt", 0o644), (".key", 0o600), (".pem", 0o600), (".p12", 0o600)):
        path = prefix.with_name("alice" + suffix)
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    chain = x509.load_pem_x509_certificates(prefix.with_name("alice.crt").read_bytes())
    assert len(chain) == 2


def test_p12_without_a_password_is_refused_before_anything_is_issued(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    result = run(
        runner, "issue", "--dir", str(ca_dir), "--profile", "client", "--name", "alice",
        "--out", str(tmp_path / "alice"), "--p12",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "LABGATE_P12_PASSWORD" in result.stderr
    assert list(tmp_path.glob("alice*")) == []


def test_a_profile_violation_is_named_and_nothing_is_written(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    result = run(
        runner, "issue", "--dir", str(ca_dir), "--profile", "client", "--name", "bob",
        "--dns", "bank.example", "--out", str(tmp_path / "bob"),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "server SAN" in result.stderr and "bank.example" in result.stderr
    assert list(tmp_path.glob("bob*")) == []


def test_sign_renew_revoke_crl_and_list(runner: CliRunner, ca_dir: Path, tmp_path: Path) -> None:
    subprocess.run(
        [
            "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", tmp_path / "gw.key", "-subj", "/CN=site-a",
            "-addext", "subjectAltName=DNS:gw.lab.example", "-out", tmp_path / "gw.csr",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    d = str(ca_dir)
    signed = run(
        runner,
        "sign",
        str(tmp_path / "gw.csr"),
        "--dir",
        d,
        "--profile",
        "gateway",
        "--out",
        str(tmp_path / "gw.crt"),
    )
    assert signed.exit_code == 0, signed.output
    gw = x509.load_pem_x509_certificates((tmp_path / "gw.crt").read_bytes())[0]

    renewed = run(
        runner,
        "renew",
        "--dir",
        d,
        "--cert",
        str(tmp_path / "gw.crt"),
        "--out",
        str(tmp_path / "gw2"),
    )
    assert renewed.exit_code == 0, renewed.output
    assert not (tmp_path / "gw2.key").exists()  # same key: it stays with its owner

    revoked = run(
        runner, "revoke", "--dir", d, "--cert", str(tmp_path / "gw.crt"), "--reason", "superseded"
    )
    assert revoked.exit_code == 0, revoked.output
    again = run(runner, "revoke", "--dir", d, "--serial", format(gw.serial_number, "X"))
    assert again.exit_code == 1 and "already revoked" in again.stderr

    der = run(runner, "crl", "--dir", d, "--out", str(tmp_path / "crl.der"), "--der")
    assert der.exit_code == 0, der.output
    crl = x509.load_der_x509_crl((tmp_path / "crl.der").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(gw.serial_number) is not None

    listed = run(runner, "list", "--dir", d, "--json", env={"LABGATE_CA_PASSPHRASE": None})
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    by_serial = {r["serial"]: r for r in rows}
    old = by_serial[format(gw.serial_number, "x")]
    assert (old["status"], old["revocation_reason"], old["identity"]) == (
        "revoked",
        "superseded",
        "labgate:gateway:site-a",
    )
    assert any(r["renewed_from"] == old["serial"] for r in rows)

    only_revoked = json.loads(run(runner, "list", "--dir", d, "--revoked", "--json").stdout)
    assert [r["serial"] for r in only_revoked] == [old["serial"]]
    table = run(runner, "list", "--dir", d)
    assert table.exit_code == 0 and "labgate:gateway:site-a" in table.stdout


def test_list_expiring_shows_only_what_is_still_valid_and_expires_within_the_days(
    runner: CliRunner, tmp_path: Path
) -> None:
    # Made in the past, so it can issue a client certificate that has already expired.
    CertificateAuthority.init(
        tmp_path / "old",
        passphrase=PASS.encode(),
        clock=lambda: datetime.now(UTC) - timedelta(days=3),
    ).close()
    ca_dir = tmp_path / "old"
    with CertificateAuthority.open(
        ca_dir, passphrase=PASS.encode(), clock=lambda: datetime.now(UTC) - timedelta(days=2)
    ) as past:
        past.issue(Profile.CLIENT, "yesterday")
    d = str(ca_dir)
    run(
        runner,
        "issue",
        "--dir",
        d,
        "--profile",
        "client",
        "--name",
        "short",
        "--out",
        str(tmp_path / "s"),
    )
    run(
        runner,
        "issue",
        "--dir",
        d,
        "--profile",
        "server",
        "--name",
        "long",
        "--dns",
        "l.example",
        "--out",
        str(tmp_path / "l"),
    )
    soon = json.loads(run(runner, "list", "--dir", d, "--expiring", "7", "--json").stdout)
    assert [r["name"] for r in soon] == ["short"]


def test_revoke_needs_exactly_one_of_serial_and_cert(runner: CliRunner, ca_dir: Path) -> None:
    result = run(runner, "revoke", "--dir", str(ca_dir))
    assert (
        result.exit_code == 1 and "exactly one of --serial, --cert and --identity" in result.stderr
    )
    bad = run(runner, "revoke", "--dir", str(ca_dir), "--serial", "xyz")
    assert bad.exit_code == 1 and "not a hexadecimal serial" in bad.stderr


def test_a_missing_ca_is_a_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    result = run(runner, "crl", "--dir", str(tmp_path / "none"), "--out", str(tmp_path / "c"))
    assert result.exit_code == 1
    assert "no complete CA" in result.stderr
    assert not (tmp_path / "c").exists()


def test_labgate_ca_runs_as_a_real_command(tmp_path: Path) -> None:
    env = {**os.environ, "LABGATE_CA_PASSPHRASE": PASS}

    def labgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labgate", "ca", *args],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip

    ca_dir, prefix = tmp_path / "ca", tmp_path / "web"
    assert labgate("init", "--dir", str(ca_dir), "--name", "Sub Lab").returncode == 0
    issued = labgate(
        "issue", "--dir", str(ca_dir), "--profile", "server", "--name", "web",
        "--dns", "localhost", "--ip", "127.0.0.1", "--out", str(prefix),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", ca_dir / "root.crt", "-untrusted", ca_dir / "issuing.crt",
         tmp_path / "web.crt"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    refused = labgate("init", "--dir", str(ca_dir))
    assert refused.returncode == 1
    assert "error: a CA already exists" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_ca_command_module_does_not_load_cryptography_until_a_command_runs() -> None:
    probe = "import sys, labgate.cli.ca; print('cryptography' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_a_wrong_passphrase_never_reaches_the_output(runner: CliRunner, ca_dir: Path) -> None:
    result = run(runner, "crl", "--dir", str(ca_dir), "--out", str(ca_dir / "c.pem"),
                 env={"LABGATE_CA_PASSPHRASE": "guessed-passphrase-123"})  # fmt: skip
    assert result.exit_code == 1
    assert "guessed-passphrase-123" not in result.output
    assert not (ca_dir / "c.pem").exists()


@pytest.mark.parametrize(
    "weak", ["...", "changeme", "Change-Me", "xxxxxxxxxxxxxxxxxxxx", "short one"]
)
def test_init_refuses_a_placeholder_or_short_passphrase(
    runner: CliRunner, tmp_path: Path, weak: str
) -> None:
    result = runner.invoke(
        app, ["ca", "init", "--dir", str(tmp_path / "ca")], env={"LABGATE_CA_PASSPHRASE": weak}
    )
    assert result.exit_code == 1
    assert "placeholder" in result.stderr or "at least 16" in result.stderr
    assert weak not in result.stderr  # the passphrase is never echoed
    assert not (tmp_path / "ca" / "issuing.key").exists()


def _leaf_serial(path: Path) -> int:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number


def _issue(runner: CliRunner, ca_dir: Path, prefix: Path, *extra: str) -> Result:
    return run(
        runner, "issue", "--dir", str(ca_dir), "--profile", "client", "--name", "alice",
        "--out", str(prefix), *extra,
    )  # fmt: skip


def test_issue_never_replaces_files_without_force(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "alice"
    assert _issue(runner, ca_dir, prefix, "--combined").exit_code == 0
    before = {s: prefix.with_name("alice" + s).read_bytes() for s in (".crt", ".key", ".pem")}
    entries = len(json.loads(run(runner, "list", "--dir", str(ca_dir), "--json").stdout))
    again = _issue(runner, ca_dir, prefix, "--combined")
    assert again.exit_code == 1 and "--force replaces them" in again.stderr
    assert {s: prefix.with_name("alice" + s).read_bytes() for s in before} == before
    # Refused before anything was signed: the inventory did not grow.
    assert len(json.loads(run(runner, "list", "--dir", str(ca_dir), "--json").stdout)) == entries
    # --force without --combined would leave alice.pem holding the old certificate.
    stale = _issue(runner, ca_dir, prefix, "--force")
    assert stale.exit_code == 1 and "alice.pem would be left holding the old" in stale.stderr
    forced = _issue(runner, ca_dir, prefix, "--combined", "--force")
    assert forced.exit_code == 0, forced.output
    crt, pem = prefix.with_name("alice.crt"), prefix.with_name("alice.pem")
    assert _leaf_serial(crt) == _leaf_serial(pem) != _leaf_serial_of(before[".crt"])


def _leaf_serial_of(pem: bytes) -> int:
    return x509.load_pem_x509_certificates(pem)[0].serial_number


def _key_matches(cert: Path, key_file: Path) -> bool:
    from cryptography.hazmat.primitives import serialization

    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*der) == leaf.public_key().public_bytes(*der)


@pytest.mark.parametrize("new_key", [True, False])
def test_renew_keeps_every_output_of_the_issue_consistent(
    runner: CliRunner, ca_dir: Path, tmp_path: Path, new_key: bool
) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    prefix = tmp_path / "alice"
    p12_env = {**ENV, "LABGATE_P12_PASSWORD": "p12 pass"}
    issued = run(
        runner, "issue", "--dir", str(ca_dir), "--profile", "client", "--name", "alice",
        "--out", str(prefix), "--combined", "--p12", env=p12_env,
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    crt, key, pem, p12 = (prefix.with_name("alice" + s) for s in (".crt", ".key", ".pem", ".p12"))
    old_serial = _leaf_serial(crt)
    renew = ["renew", "--dir", str(ca_dir), "--cert", str(crt), "--out", str(prefix)]
    renew += ["--new-key"] if new_key else []
    refused = run(runner, *renew, env=p12_env)
    assert refused.exit_code == 1 and "--force replaces them" in refused.stderr
    no_password = run(runner, *renew, "--force")
    assert no_password.exit_code == 1 and "alice.p12 must be rewritten too" in no_password.stderr
    assert _leaf_serial(crt) == old_serial
    renewed = run(runner, *renew, "--force", env=p12_env)
    assert renewed.exit_code == 0, renewed.output
    new_serial = _leaf_serial(crt)
    assert new_serial != old_serial
    assert _leaf_serial(pem) == new_serial and _key_matches(pem, pem) and _key_matches(crt, key)
    bundle = pkcs12.load_pkcs12(p12.read_bytes(), b"p12 pass")
    assert bundle.cert is not None and bundle.cert.certificate.serial_number == new_serial
    # The README's last step now revokes the certificate alice.pem (what qslib uses) holds.
    revoked = run(runner, "revoke", "--dir", str(ca_dir), "--cert", str(crt))
    assert revoked.exit_code == 0, revoked.output
    rows = {
        r["serial"]: r
        for r in json.loads(run(runner, "list", "--dir", str(ca_dir), "--json").stdout)
    }
    assert rows[format(_leaf_serial(pem), "x")]["status"] == "revoked"


def test_renew_with_the_same_key_refuses_a_key_file_of_another_certificate(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    assert _issue(runner, ca_dir, tmp_path / "alice").exit_code == 0
    assert _issue(runner, ca_dir, tmp_path / "other").exit_code == 0
    result = run(
        runner, "renew", "--dir", str(ca_dir), "--cert", str(tmp_path / "alice.crt"),
        "--out", str(tmp_path / "other"), "--force",
    )  # fmt: skip
    assert result.exit_code == 1 and "other.key is not the key of the certificate" in result.stderr


def test_sign_never_replaces_its_output_without_force(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", tmp_path / "d.key", "-subj", "/CN=dev-1", "-out", tmp_path / "d.csr"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    out = tmp_path / "d.crt"
    out.write_text("somebody's file")
    sign = ["sign", str(tmp_path / "d.csr"), "--dir", str(ca_dir), "--profile", "device"]
    refused = run(runner, *sign, "--out", str(out))
    assert refused.exit_code == 1 and "--force replaces it" in refused.stderr
    assert out.read_text() == "somebody's file"
    assert run(runner, *sign, "--out", str(out), "--force").exit_code == 0
    assert _leaf_serial(out)


def _listing_ca(runner: CliRunner, ca_dir: Path, tmp_path: Path) -> None:
    assert _issue(runner, ca_dir, tmp_path / "alice").exit_code == 0
    run(runner, "revoke", "--dir", str(ca_dir), "--cert", str(tmp_path / "alice.crt"),
        "--reason", "keyCompromise")  # fmt: skip


def test_list_in_a_pipe_is_plain_text_one_certificate_a_line(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    _listing_ca(runner, ca_dir, tmp_path)
    listed = run(runner, "list", "--dir", str(ca_dir), env={"COLUMNS": "80"})
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["serial", "profile", "name", "identity", "expires", "status"]
    assert not set("│┃━─┏└") & set(listed.stdout) and "\x1b[" not in listed.stdout
    rows = json.loads(run(runner, "list", "--dir", str(ca_dir), "--json").stdout)
    assert len(lines) == 1 + len(rows)
    for row in rows:
        (line,) = [line for line in lines if line.startswith(row["serial"] + " ")]
        assert row["profile"] in line.split() and row["name"].split()[0] in line
    alice = next(line for line in lines if "labgate:user:alice" in line)
    assert alice.endswith("revoked (keyCompromise)")


def _in_a_terminal(args: list[str], columns: int) -> str:
    import fcntl
    import pty
    import re
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "labgate", *args], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0, out
    return re.sub(r"\x1b\[[0-9;]*m", "", out.decode()).replace("\r", "")


def test_list_in_an_80_column_terminal_keeps_every_value_whole(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    _listing_ca(runner, ca_dir, tmp_path)
    rows = json.loads(run(runner, "list", "--dir", str(ca_dir), "--json").stdout)
    for columns in (80, 160):
        shown = _in_a_terminal(["ca", "list", "--dir", str(ca_dir)], columns)
        assert max(len(line.rstrip()) for line in shown.splitlines()) <= columns
        for row in rows:
            assert row["serial"] in shown  # whole, on one line
            assert row["profile"] in shown
        assert "labgate:user:alice" in shown and "revoked" in shown


def test_revoke_by_identity_revokes_every_certificate_a_person_holds_and_no_one_elses(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    assert _issue(runner, ca_dir, tmp_path / "alice").exit_code == 0
    renewed = run(
        runner, "renew", "--dir", str(ca_dir), "--cert", str(tmp_path / "alice.crt"),
        "--out", str(tmp_path / "alice2"), "--new-key",
    )  # fmt: skip
    assert renewed.exit_code == 0, renewed.output
    # A name that merely starts the same, and a device named alike, are other holders.
    for name, profile in (("alice2", "client"), ("alice", "device")):
        other = run(
            runner, "issue", "--dir", str(ca_dir), "--profile", profile, "--name", name,
            "--out", str(tmp_path / f"{profile}-{name}"),
        )  # fmt: skip
        assert other.exit_code == 0, other.output
    done = run(
        runner, "revoke", "--dir", str(ca_dir), "--identity", "labgate:user:alice",
        "--reason", "privilegeWithdrawn",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = json.loads(run(runner, "list", "--dir", str(ca_dir), "--json").stdout)
    status = {(r["identity"], r["serial"]): r["status"] for r in rows if r["identity"]}
    alices = [s for (i, _), s in status.items() if i == "labgate:user:alice"]
    assert alices == ["revoked", "revoked"]
    assert (
        status[("labgate:user:alice2", format(_leaf_serial(tmp_path / "client-alice2.crt"), "x"))]
        == "valid"
    )
    assert (
        status[("labgate:device:alice", format(_leaf_serial(tmp_path / "device-alice.crt"), "x"))]
        == "valid"
    )
    again = run(runner, "revoke", "--dir", str(ca_dir), "--identity", "labgate:user:alice")
    assert again.exit_code == 1 and "no unrevoked, unexpired certificate" in again.stderr


def test_issue_into_a_missing_directory_is_refused_before_anything_is_signed(
    runner: CliRunner, ca_dir: Path, tmp_path: Path
) -> None:
    before = run(runner, "list", "--dir", str(ca_dir), "--json").stdout
    result = _issue(runner, ca_dir, tmp_path / "no-such-dir" / "alice")
    assert result.exit_code == 1 and "no-such-dir is not a directory" in result.stderr
    assert run(runner, "list", "--dir", str(ca_dir), "--json").stdout == before
