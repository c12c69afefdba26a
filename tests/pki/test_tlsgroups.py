"""Setting a context's key-exchange groups: what the context then accepts, proved by handshakes
over loopback with clients offering one group each, and the errors for bad lists."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from labgate.pki import CertificateAuthority, Profile, tlsgroups
from labgate.pki.tlsgroups import GroupsError, set_groups


@pytest.fixture
def server_files(ca: CertificateAuthority, tmp_path: Path) -> tuple[Path, Path]:
    ca.issue(Profile.SERVER, "groups-host", dns=["localhost"]).write(tmp_path / "server")
    return tmp_path / "server.crt", tmp_path / "server.key"


def _accepts(server: ssl.SSLContext, group: str) -> bool:
    """Whether a TLS 1.3 client offering only `group` completes a handshake with `server`."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with conn, server.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve)
        thread.start()
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        client.minimum_version = ssl.TLSVersion.TLSv1_3
        client.set_ecdh_curve(group)  # one group, on the client side
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=10) as raw,
                client.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                return tls.recv(2) == b"ok"
        except (ssl.SSLError, OSError):
            return False
        finally:
            thread.join(10)


@pytest.fixture
def server(server_files: tuple[Path, Path]) -> Iterator[ssl.SSLContext]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*server_files)
    yield context


def test_only_the_groups_set_are_accepted(server: ssl.SSLContext) -> None:
    assert _accepts(server, "X448")  # OpenSSL's default list has it
    set_groups(server, ["X25519", "prime256v1", "secp384r1"])
    assert [g for g in ("X25519", "prime256v1", "secp384r1") if _accepts(server, g)] == [
        "X25519", "prime256v1", "secp384r1"
    ]  # fmt: skip
    assert not _accepts(server, "X448")
    assert not _accepts(server, "secp521r1")


def test_an_unknown_group_is_an_error_naming_the_list(server: ssl.SSLContext) -> None:
    with pytest.raises(GroupsError, match="X25519:curve-of-doom"):
        set_groups(server, ["X25519", "curve-of-doom"])
    with pytest.raises(GroupsError, match="at least one"):
        set_groups(server, [])


def test_without_a_way_to_set_the_list_only_prime256v1_is_accepted(
    server: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tlsgroups, "_libssl", lambda: None)
    set_groups(server, ["X25519", "prime256v1", "secp384r1"])
    assert "accepting prime256v1 only" in caplog.text
    assert _accepts(server, "prime256v1")
    assert not _accepts(server, "X25519")  # narrower than asked, never wider
    assert not _accepts(server, "X448")
