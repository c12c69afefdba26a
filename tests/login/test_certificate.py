"""`labgate cert get`: a key made here, a certificate from the real server, one 0600 file that
`load_cert_chain` takes; refused for a disabled person and for a login whose refresh token was
reused."""

from __future__ import annotations

import dataclasses
import ssl
import stat
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from tests.control.conftest import Clock, LiveServer
from tests.login.conftest import NEW_PASSWORD, Person
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.login.session import Authorised
from labgate.login.store import LoginStore
from labgate.pki.identity import identity_of


def invoke(*args: str, input: str = "") -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def logged_in(live_server: LiveServer, person: Person) -> None:
    code, _, err = invoke(
        "login",
        live_server.url,
        "--server-ca",
        str(live_server.root),
        "--user",
        person.username,
        input=f"{person.one_time}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n",
    )
    assert code == 0, err


def pem_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [b.split("-----")[0] for b in text.split("-----BEGIN ")[1:]]


def test_cert_get_writes_certificate_chain_and_key_in_one_0600_file(
    live_server: LiveServer, person: Person, store: LoginStore, tmp_path: Path
) -> None:
    logged_in(live_server, person)
    out = tmp_path / "erin.pem"
    code, said, err = invoke("cert", "get", "--out", str(out))
    assert code == 0, err
    assert "certificate for labgate:user:erin" in said
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    kinds = pem_blocks(out)
    assert kinds[0] == "CERTIFICATE" and kinds[-1] == "PRIVATE KEY"
    assert kinds.count("PRIVATE KEY") == 1 and len(kinds) >= 3  # leaf, issuing CA, key
    leaf = x509.load_pem_x509_certificate(out.read_bytes())
    assert identity_of(leaf) == "labgate:user:erin"
    key = load_pem_private_key(
        out.read_bytes()[out.read_bytes().index(b"-----BEGIN PRIVATE") :], None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    # What qslib does with it, and what openssl says of the chain.
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(out)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(live_server.root), "-untrusted", str(out), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    # The file is the server's record too: the certificate is listed as the caller's own.
    listed = Authorised(store).call("GET", "/api/v1/certificates")
    assert format(leaf.serial_number, "x") in [c["serial"] for c in listed]


def test_cert_get_writes_me_pem_in_the_configuration_directory_by_default(
    live_server: LiveServer, person: Person, store: LoginStore
) -> None:
    logged_in(live_server, person)
    code, _, err = invoke("cert", "get")
    assert code == 0, err
    assert stat.S_IMODE((store.directory / "me.pem").stat().st_mode) == 0o600
    first = (store.directory / "me.pem").read_bytes()
    assert invoke("cert", "get")[0] == 0
    again = (store.directory / "me.pem").read_bytes()
    assert again != first  # a new key each time, written over the old file
    assert not [p for p in store.directory.iterdir() if p.name.endswith(".tmp")]


def test_a_disabled_persons_cert_get_is_refused_and_writes_nothing(
    live_server: LiveServer, person: Person, store: LoginStore, admin: Any, tmp_path: Path
) -> None:
    logged_in(live_server, person)
    api, headers = admin
    assert api.post(f"/api/v1/users/{person.user_id}/disable", headers=headers).status_code == 200
    out = tmp_path / "erin.pem"
    code, _, err = invoke("cert", "get", "--out", str(out))
    assert code == 1
    assert "has ended" in err and "revoked" in err
    assert not out.exists()
    # And logging in again does not bring the disabled account back.
    code, _, err = invoke(
        "login", live_server.url, "--server-ca", str(live_server.root), "--user", "erin",
        input=f"{NEW_PASSWORD}\n",
    )  # fmt: skip
    assert code == 1 and "refused the password" in err


def test_cert_get_without_a_login_says_so(store: LoginStore) -> None:
    code, _, err = invoke("cert", "get")
    assert code == 1 and "not logged in" in err and "labgate login" in err


def test_cert_get_with_a_refresh_token_reused_after_rotation_says_log_in_again(
    live_server: LiveServer, person: Person, store: LoginStore, clock: Clock, tmp_path: Path
) -> None:
    logged_in(live_server, person)
    stale = store.require()
    Authorised(store).fresh(refused=stale.tokens.access_token)  # rotated: the copy is stale
    clock.advance(60)  # past the replay grace
    # The stale copy comes back, its access token due for refresh.
    due = dataclasses.replace(
        stale.tokens, access_expires_at=stale.tokens.obtained_at - timedelta(seconds=1)
    )
    store.save(dataclasses.replace(stale, tokens=due))
    out = tmp_path / "erin.pem"
    code, _, err = invoke("cert", "get", "--out", str(out))
    assert code == 1
    assert "log in again" in err and "presented again" in err
    assert not out.exists()
