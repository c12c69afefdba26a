"""The gateway's client-facing TLS, scanned from outside as an auditor would: sslyze's check
against Mozilla's intermediate profile, and the groups an attacker's client may offer."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from labgate.pki.keys import KeyType
from labgate.pki.profiles import Profile


@pytest.mark.slow
def test_the_gateway_meets_mozillas_intermediate_profile(
    gateway_factory: Any, pki: Any, mozilla_intermediate_issues: Any, tmp_path: Path
) -> None:
    # A client certificate without a grant: every handshake completes, and each is refused
    # afterwards without the instrument being contacted. sslyze's SSL 2.0 probe loads neither an
    # EC key nor a chain, so the scanner has an RSA key and sends its certificate alone, and
    # this gateway trusts the issuing CA directly. Its TLS parameters are the same.
    issued = pki.ca.issue(Profile.CLIENT, "scanner", key_type=KeyType.RSA_3072)
    leaf, key = tmp_path / "scanner.crt", tmp_path / "scanner.key"
    leaf.write_bytes(issued.certificate.public_bytes(Encoding.PEM))
    key.write_bytes(issued.key_pem)
    client_ca = tmp_path / "client-ca.crt"
    client_ca.write_bytes(pki.ca.root_pem + pki.ca.issuing_pem)
    gateway = gateway_factory(tls_files=(pki.gateway_crt, pki.gateway_key, client_ca))
    issues = mozilla_intermediate_issues(
        gateway.address("qs5-plain"), server_name="qs5-plain", ca=pki.root, client_cert=(leaf, key)
    )
    assert issues == {}


def _s_client_with_groups(gateway: Any, pki: Any, groups: str, version: str) -> str:
    host, port = gateway.address("qs5-plain")
    client = pki.clients["alice"]
    command = ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", "qs5-plain",
               "-CAfile", str(pki.root), "-cert", str(client.crt), "-cert_chain", str(client.crt),
               "-key", str(client.key), "-ign_eof", "-groups", groups, version]  # fmt: skip
    result = subprocess.run(
        command, input="0 QUIT\n", capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("group", ["X448", "P-521", "ffdhe2048", "ffdhe4096"])
def test_groups_outside_the_profile_are_refused(
    gateway: Any, pki: Any, group: str, version: str
) -> None:
    # An attacker's client that offers only that group: no handshake completes (the gateway
    # ends it without a word, so openssl reports only that nothing was negotiated).
    output = _s_client_with_groups(gateway, pki, group, version)
    assert "READy" not in output
    assert "Cipher is (NONE)" in output, output


# TLS 1.2: the client must also offer the certificate's curve (P-256) to accept it, and the
# gateway then prefers P-256 to P-384, so P-384 is seen there only by sslyze's own enumeration.
ACCEPTED = [
    ("X25519", "X25519", "-tls1_3"),
    ("P-256", "(prime256v1|P-256)", "-tls1_3"),
    ("P-384", "secp384r1", "-tls1_3"),
    ("X25519:P-256", "X25519", "-tls1_2"),
    ("P-256", "(prime256v1|P-256)", "-tls1_2"),
]


@pytest.mark.parametrize(("offered", "shown", "version"), ACCEPTED)
def test_the_profiles_groups_are_each_accepted(
    gateway: Any, pki: Any, offered: str, shown: str, version: str
) -> None:
    output = _s_client_with_groups(gateway, pki, offered, version)
    assert "READy" in output, output
    assert re.search(rf"Server Temp Key: (ECDH, )?{shown}", output), output
