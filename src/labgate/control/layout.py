"""Where things live in a server's data directory."""

from __future__ import annotations

from pathlib import Path

from labgate.pki.authority import ISSUING_CRT, ROOT_CRT

ADMIN_PASSWORD_FILE = "admin-password"  # noqa: S105 (a file name)
CA_DIR = "ca"
SERVER_CERT_PREFIX = "server"


def ca_dir(data_dir: Path) -> Path:
    return data_dir / CA_DIR


def server_certificate_path(data_dir: Path) -> Path:
    """The server certificate followed by the issuing CA (what TLS clients are sent)."""
    return data_dir / f"{SERVER_CERT_PREFIX}.crt"


def server_key_path(data_dir: Path) -> Path:
    return data_dir / f"{SERVER_CERT_PREFIX}.key"


def ca_root_path(data_dir: Path) -> Path:
    """The CA root certificate: what clients trust to reach this server."""
    return ca_dir(data_dir) / ROOT_CRT


def ca_issuing_path(data_dir: Path) -> Path:
    return ca_dir(data_dir) / ISSUING_CRT
