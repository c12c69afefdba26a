"""The control server's TLS, scanned from outside: sslyze's check against Mozilla's intermediate
profile (it offered two CBC suites and the groups X448 and secp521r1), and an attacker's client
that offers only what the profile leaves out."""

from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import pytest

from labgate.control.layout import ca_root_path


def _address(live_server: Any) -> tuple[str, int]:
    url = urlsplit(live_server.url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


@pytest.mark.slow
def test_the_control_server_meets_mozillas_intermediate_profile(
    live_server: Any, mozilla_intermediate_issues: Any
) -> None:
    issues = mozilla_intermediate_issues(
        _address(live_server),
        server_name="localhost",
        ca=ca_root_path(live_server.settings.data_dir),
    )
    assert issues == {}


def _handshake(live_server: Any, context: ssl.SSLContext) -> str:
    """The TLS 1.2 suite the server chose, or raise ssl.SSLError."""
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # this probe only asks what is offered
    with (
        socket.create_connection(_address(live_server), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return cipher[0]


@pytest.mark.parametrize(
    "suite", ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA"]
)
def test_cbc_suites_are_refused(live_server: Any, suite: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(suite)
    with pytest.raises(ssl.SSLError):
        _handshake(live_server, context)


def test_an_aead_suite_is_accepted(live_server: Any) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert _handshake(live_server, context) == "ECDHE-ECDSA-AES128-GCM-SHA256"
