"""The README's command sequences, run as written (real processes, openssl, curl and jq)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

README = Path(__file__).resolve().parents[2] / "README.md"
FAST = {
    "LABGATE_ARGON2_MEMORY_KIB": "64",
    "LABGATE_ARGON2_TIME_COST": "1",
    "LABGATE_ARGON2_PARALLELISM": "1",
}
STRONG = "Violet staple hammock 7 orbit!"  # enhanced: a new server has [secure] pwd on


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n##", start + len(title))  # the next heading (code comments have one #)
    return text[start : end if end != -1 else len(text)]


def _sh_commands(section: str) -> list[str]:
    """Each command of the section's ```sh blocks, continuation lines joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def _bash(commands: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    script = "set -euo pipefail\nlabgate() { " + sys.executable + ' -m labgate "$@"; }\n'
    done = subprocess.run(
        ["bash", "-c", script + "\n".join(commands)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **FAST, **(env or {})},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{commands}\n{done.stdout}\n{done.stderr}"


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def _revoked_by_openssl(tmp_path: Path, pem: str, crl: str) -> str:
    done = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", "ca/root.crt", "-untrusted",
         "ca/issuing.crt", "-CRLfile", crl, pem],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout + done.stderr


def test_the_quickstart_ca_sequence_ends_with_the_certificate_in_use_revoked(
    tmp_path: Path,
) -> None:
    wanted = ("umask", "head -c", "printf", "labgate ca ")
    commands = [c for c in _sh_commands(_section("## Put a QuantStudio")) if c.startswith(wanted)]
    assert any("ca renew" in c for c in commands) and any("ca revoke" in c for c in commands)
    before_revoke = [c for c in commands if "ca revoke" not in c and "ca crl" not in c]
    first_crl = next(c for c in commands if "ca crl" in c)
    _bash([*before_revoke, first_crl], tmp_path)
    # After the renewal, alice.pem (what qslib is given) holds the renewed certificate ...
    pem, crt = _leaf(tmp_path / "alice.pem"), _leaf(tmp_path / "alice.crt")
    assert pem.serial_number == crt.serial_number
    assert "OK" in _revoked_by_openssl(tmp_path, "alice.pem", "ca.crl")
    # ... and the README's offboarding steps, run now, revoke it: qslib's file stops working.
    _bash([c for c in commands if "ca revoke" in c or "ca crl" in c], tmp_path)
    assert "certificate revoked" in _revoked_by_openssl(tmp_path, "alice.pem", "ca.crl")
    assert "OK" in _revoked_by_openssl(tmp_path, "gateway.crt", "ca.crl")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("curl") is None, reason="jq, curl")
def test_the_control_server_steps_give_a_gateway_its_bundle_and_a_person_a_qslib_pem(
    tmp_path: Path,
) -> None:
    commands = _sh_commands(_section("### With a control server"))
    server = subprocess.Popen(
        [sys.executable, "-m", "labgate", "server", "init", "--data", "srv"],
        cwd=tmp_path, env={**os.environ, **FAST},
    )  # fmt: skip
    assert server.wait(timeout=120) == 0
    running = subprocess.Popen(
        [sys.executable, "-m", "labgate", "server", "run", "--data", "srv", "--listen",
         "127.0.0.1:0"],
        cwd=tmp_path, env={**os.environ, **FAST}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert running.stdout is not None
        url = json.loads(running.stdout.readline())["url"]
        # The gateway's certificate, as the README issues it, fetches the gateway's bundle.
        _bash([c for c in commands if c.startswith("labgate ca issue")], tmp_path)
        root = str(tmp_path / "srv" / "ca" / "root.crt")
        gateway_tls = ssl.create_default_context(cafile=root)
        gateway_tls.load_cert_chain(tmp_path / "gateway.crt", tmp_path / "gateway.key")
        with httpx.Client(base_url=url, verify=gateway_tls, timeout=30) as gw:
            assert (
                gw.get(
                    "/api/v1/gateways/site-a/bundle", params={"instrument": "qs5-bench3"}
                ).status_code
                == 200
            )
        # Alice exists, with a password of her own.
        admin_pass = (tmp_path / "srv" / "admin-password").read_text().strip()
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=root)) as api:
            admin = _full_session(api, "admin", admin_pass)
            made = api.post("/api/v1/users", headers=admin, json={"username": "alice"})
            assert made.status_code == 201, made.text
            _full_session(api, "alice", made.json()["one_time_password"])
        steps = [
            c.replace("https://127.0.0.1:8443", url).replace('"password": "..."',
                                                            f'"password": "{STRONG}"')
            for c in commands
            if not c.startswith("labgate")
        ]  # fmt: skip
        _bash(steps, tmp_path)
        leaf = _leaf(tmp_path / "alice.pem")
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(n.value) for n in names] == ["labgate:user:alice"]
        client = ssl.create_default_context(cafile=root)
        client.load_cert_chain(tmp_path / "alice.pem")  # key and chain in one file, as qslib reads
        # Offboarding, the README's one call: her certificate is in the gateway's next bundle.
        assert "POST /api/v1/users/{id}/disable" in _section("### With a control server")
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=root)) as api:
            admin = _login(api, "admin")
            (alice,) = [u for u in api.get("/api/v1/users", headers=admin).json()
                        if u["username"] == "alice"]  # fmt: skip
            disabled = api.post(f"/api/v1/users/{alice['id']}/disable", headers=admin)
            assert disabled.status_code == 200, disabled.text
        with httpx.Client(base_url=url, verify=gateway_tls, timeout=30) as gw:
            bundle = gw.get(
                "/api/v1/gateways/site-a/bundle", params={"instrument": "qs5-bench3"}
            ).text
        payload = json.loads(base64.urlsafe_b64decode(bundle.split(".")[1] + "=="))
        crl = x509.load_pem_x509_crl(payload["crl_pem"].encode())
        assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(timeout=30)


def _login(api: httpx.Client, username: str) -> dict[str, str]:
    done = api.post("/api/v1/auth/login", json={"username": username, "password": STRONG})
    assert done.status_code == 200, done.text
    return {"Authorization": f"Bearer {done.json()['access_token']}"}


def _full_session(api: httpx.Client, username: str, one_time: str) -> dict[str, str]:
    first = api.post("/api/v1/auth/login", json={"username": username, "password": one_time})
    assert first.status_code == 200, first.text
    changed = api.post(
        "/api/v1/auth/password",
        headers={"Authorization": f"Bearer {first.json()['access_token']}"},
        json={"old_password": one_time, "new_password": STRONG},
    )
    assert changed.status_code == 200, changed.text
    return {"Authorization": f"Bearer {changed.json()['access_token']}"}
