"""certbot, unchanged, against labgate on loopback: register with EAB, obtain (http-01 from
its own standalone server), renew, revoke; `openssl verify` accepts the certificate before
the revocation and refuses it with the CRL after."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy.orm import Session

from labgate.control.certificates import crl_revocations
from labgate.control.database import make_engine
from labgate.control.http.serving import run_in_thread
from labgate.control.keystore import load_passphrase
from labgate.control.layout import ca_dir
from labgate.pki.authority import CertificateAuthority

pytestmark = pytest.mark.slow  # four certbot runs, each a few seconds of start-up

CERTBOT = Path(sys.executable).with_name("certbot")
NAME = "a.lab.test"


def _certbot(work: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(CERTBOT),
        *args,
        "--non-interactive",
        "--config-dir",
        str(work / "config"),
        "--work-dir",
        str(work / "work"),
        "--logs-dir",
        str(work / "logs"),
    ]
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(root))
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=40, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _openssl_verify(
    root: Path, live: Path, *extra: str, cert: Path | None = None
) -> subprocess.CompletedProcess[str]:
    chain = live / "chain.pem"
    leaf = cert or live / "cert.pem"
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(chain), *extra, str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(not CERTBOT.exists(), reason="certbot is not installed beside this Python")
def test_certbot_obtains_renews_and_revokes_through_eab(
    settings: Any, make_eab: Any, clock: Any, tmp_path: Path, free_port: Any
) -> None:
    port = free_port()
    acme_settings = settings.model_copy(
        update={"acme_http_port": port, "acme_static_hosts": {NAME: ("127.0.0.1",)}}
    )
    eab = make_eab(dns_suffixes=["lab.test"])
    root = ca_dir(settings.data_dir) / "root.crt"
    live = tmp_path / "config" / "live" / NAME
    with run_in_thread(acme_settings, clock=clock) as server:
        directory = f"{server.url}/acme/directory"
        common = [
            "--server",
            directory,
            "--standalone",
            "--http-01-port",
            str(port),
            "--http-01-address",
            "127.0.0.1",
        ]
        _certbot(
            tmp_path,
            root,
            "certonly",
            *common,
            "--agree-tos",
            "--register-unsafely-without-email",
            # The `=` form: a base64url value may begin with '-', which argparse would take
            # for an option (1 key in 64).
            f"--eab-kid={eab['kid']}",
            f"--eab-hmac-key={eab['hmac_key']}",
            "--key-type",
            "ecdsa",
            "-d",
            NAME,
        )
        first = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
        assert _openssl_verify(root, live).returncode == 0

        _certbot(
            tmp_path,
            root,
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--cert-name",
            NAME,
        )
        renewed = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
        assert renewed.serial_number != first.serial_number
        assert _openssl_verify(root, live, "-purpose", "sslserver").returncode == 0

        _certbot(
            tmp_path,
            root,
            "revoke",
            "--server",
            directory,
            "--cert-path",
            str(live / "cert.pem"),
            "--reason",
            "keycompromise",
            "--no-delete-after-revoke",
        )
    # The server is down: open its CA and database as the next start would.
    passphrase = load_passphrase(settings)
    engine = make_engine(settings.resolved_database_url)
    with (
        Session(engine) as session,
        CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca,
    ):
        revocations = crl_revocations(session, now=clock())
        assert [r.serial for r in revocations] == [renewed.serial_number]
        assert revocations[0].reason == "keyCompromise"
        entry = ca.inventory.get(renewed.serial_number)
        assert entry is not None and entry.revoked_at is not None  # copied to the inventory
        crl = tmp_path / "crl.pem"
        crl.write_bytes(ca.crl_pem_bundle(also=revocations))
    engine.dispose()
    refused = _openssl_verify(root, live, "-crl_check", "-CRLfile", str(crl))
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    # The first certificate was not revoked: the same CRL lets it through.
    first_pem = tmp_path / "first.pem"
    shutil.copy(live.parent.parent / "archive" / NAME / "cert1.pem", first_pem)
    kept = _openssl_verify(root, live, "-crl_check", "-CRLfile", str(crl), cert=first_pem)
    assert kept.returncode == 0, kept.stdout + kept.stderr
