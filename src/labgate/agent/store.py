"""The agent's data directory: what it keeps between starts, each file written atomically.

    DIR/server.json   the server URL this agent links to (public)
    DIR/server-ca.crt the CA certificate it trusts for that server (public)
    DIR/state.json    linked: device id, identity, serial, not_after (public; written last, so a
                      crash mid-link leaves an unlinked agent, never a half-linked one)
    DIR/device.pem    the device certificate, its chain and its private key, one 0600 file, so
                      a renewal replaces key and certificate in one rename
    DIR/tokens.json   the bound token pair (0600)
    DIR/status.json   what `labgate agent status` shows of a running agent (public)

The local secret is never among them.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from labgate.agent.errors import CorruptState, NotLinked
from labgate.pki.atomic import PRIVATE, PUBLIC, write_atomic

SERVER = "server.json"
SERVER_CA = "server-ca.crt"
STATE = "state.json"
DEVICE = "device.pem"
TOKENS = "tokens.json"
STATUS = "status.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class Linked:
    device_id: str
    identity: str
    serial: str
    not_before: datetime
    not_after: datetime
    linked_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    access_token: str
    refresh_token: str
    issued_at: datetime
    expires_at: datetime

    def __repr__(self) -> str:
        return f"Tokens(expires_at={self.expires_at.isoformat()}, <hidden>)"


class Store:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.directory / name

    # --- the server ---------------------------------------------------------------------
    def save_server(self, url: str, ca_pem: bytes) -> None:
        write_atomic(self.path(SERVER_CA), ca_pem, mode=PUBLIC)
        self._write_json(SERVER, {"url": url}, mode=PUBLIC)

    def server_url(self) -> str:
        data = self._read_json(SERVER)
        if data is None:
            raise NotLinked(f"{self.directory}: no server.json (has `labgate agent run` run here?)")
        url = data.get("url")
        if not isinstance(url, str):
            raise CorruptState(f"{self.path(SERVER)}: no 'url'")
        return url

    # --- linked state -------------------------------------------------------------------
    def save_link(self, linked: Linked, device_pem: bytes, tokens: Tokens) -> None:
        """Key and certificate, then tokens, then the state file that makes them count."""
        write_atomic(self.path(DEVICE), device_pem, mode=PRIVATE)
        self.save_tokens(tokens)
        self.save_state(linked)

    def save_state(self, linked: Linked) -> None:
        self._write_json(STATE, _plain(asdict(linked)), mode=PUBLIC)

    def save_device(self, device_pem: bytes) -> None:
        write_atomic(self.path(DEVICE), device_pem, mode=PRIVATE)

    def save_tokens(self, tokens: Tokens) -> None:
        self._write_json(TOKENS, _plain(asdict(tokens)), mode=PRIVATE)

    def linked(self) -> Linked | None:
        data = self._read_json(STATE)
        if data is None:
            return None
        try:
            return Linked(
                device_id=str(data["device_id"]),
                identity=str(data["identity"]),
                serial=str(data["serial"]),
                not_before=datetime.fromisoformat(data["not_before"]),
                not_after=datetime.fromisoformat(data["not_after"]),
                linked_at=datetime.fromisoformat(data["linked_at"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptState(f"{self.path(STATE)}: {error}") from None

    def tokens(self) -> Tokens:
        data = self._read_json(TOKENS)
        if data is None:
            raise NotLinked(f"{self.path(TOKENS)} is missing")
        try:
            return Tokens(
                access_token=str(data["access_token"]),
                refresh_token=str(data["refresh_token"]),
                issued_at=datetime.fromisoformat(data["issued_at"]),
                expires_at=datetime.fromisoformat(data["expires_at"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptState(f"{self.path(TOKENS)}: {error}") from None

    def forget_link(self) -> None:
        """State first (so a crash half-way leaves an unlinked agent), then the secrets."""
        for name in (STATE, TOKENS, DEVICE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))

    # --- status of a running agent ------------------------------------------------------
    def save_status(self, status: dict[str, Any]) -> None:
        self._write_json(STATUS, status, mode=PUBLIC)

    def status(self) -> dict[str, Any] | None:
        return self._read_json(STATUS)

    # --- plumbing -----------------------------------------------------------------------
    def _write_json(self, name: str, data: dict[str, Any], *, mode: int) -> None:
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_atomic(self.path(name), text.encode("utf-8"), mode=mode)

    def _read_json(self, name: str) -> dict[str, Any] | None:
        try:
            text = self.path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as error:
            raise CorruptState(f"{self.path(name)}: not JSON ({error})") from None
        if not isinstance(data, dict):
            raise CorruptState(f"{self.path(name)}: expected a JSON object")
        return data


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}
