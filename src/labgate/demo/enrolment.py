"""The demo's first minute at the control server, done through its public API as a person would:
the administrator's first login (whose one-time password may only be changed), a new password
kept 0600 for the person, and the grants the demo's identities need."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from labgate.pki.atomic import PRIVATE, write_atomic

ADMIN = "admin"
# Seconds for one API call; login costs one argon2id verification (about 0.2 s here).
CALL_TIMEOUT_S = 30.0


class EnrolmentFailed(RuntimeError):
    """The control server refused a step; the message names the step and its answer."""


def enrol_admin(
    *,
    url: str,
    server_ca: Path,
    one_time_password: Path,
    new_password: Path,
    grants: Mapping[str, str],
) -> None:
    """Log in as admin (changing the one-time password on first use) and make `grants`
    (identity URI -> level, on every instrument). Grants that exist already are kept."""
    context = ssl.create_default_context(cafile=str(server_ca))
    with httpx.Client(base_url=url, verify=context, timeout=CALL_TIMEOUT_S) as client:
        token = _admin_token(client, one_time_password, new_password)
        for identity, level in grants.items():
            answer = client.post(
                "/api/v1/grants",
                json={"principal": identity, "instrument": "*", "level": level},
                headers={"Authorization": f"Bearer {token}"},
            )
            if answer.status_code not in (201, 409):  # 409: made by an earlier run
                raise EnrolmentFailed(f"grant for {identity}: {_said(answer)}")


def _admin_token(client: httpx.Client, one_time_password: Path, new_password: Path) -> str:
    if new_password.exists():
        token: str = _login(client, new_password.read_text().strip())["access_token"]
        return token
    first_password = one_time_password.read_text().strip()
    session = _login(client, first_password)
    if not session.get("password_change_required"):
        first: str = session["access_token"]
        return first
    # Keep the new password before the server takes it, so that it is never lost; if the
    # server refuses it, the file goes again.
    # Random, and of every class the enhanced policy asks for (a new server has it on).
    password = secrets.token_urlsafe(24) + "-Aa1"
    write_atomic(new_password, password.encode() + b"\n", mode=PRIVATE)
    answer = client.post(
        "/api/v1/auth/password",
        json={"old_password": first_password, "new_password": password},
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )
    if answer.status_code != 200:
        new_password.unlink()
        raise EnrolmentFailed(f"changing the admin's one-time password: {_said(answer)}")
    changed: str = answer.json()["access_token"]
    return changed


def _login(client: httpx.Client, password: str) -> dict[str, Any]:
    answer = client.post("/api/v1/auth/login", json={"username": ADMIN, "password": password})
    if answer.status_code != 200:
        raise EnrolmentFailed(f"admin login: {_said(answer)}")
    session: dict[str, Any] = answer.json()
    return session


def _said(answer: httpx.Response) -> str:
    """The server's error code and message (never a token: errors carry none)."""
    try:
        body = answer.json()
        return f"{answer.status_code} {body.get('code')}: {body.get('message')}"
    except ValueError:
        return f"{answer.status_code}"


def approve_code(*, url: str, server_ca: Path, admin_password: Path, user_code: str) -> str:
    """Approve a device's user code as the administrator (after reading what it names); the
    device id approved."""
    context = ssl.create_default_context(cafile=str(server_ca))
    with httpx.Client(base_url=url, verify=context, timeout=CALL_TIMEOUT_S) as client:
        token = _login(client, admin_password.read_text().strip())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        shown = client.get(
            "/api/v1/device-codes/approve", params={"user_code": user_code}, headers=headers
        )
        if shown.status_code != 200:
            raise EnrolmentFailed(f"reading device code {user_code}: {_said(shown)}")
        answer = client.post(
            "/api/v1/device-codes/approve",
            json={"user_code": user_code, "approve": True},
            headers=headers,
        )
        if answer.status_code != 200:
            raise EnrolmentFailed(f"approving device code {user_code}: {_said(answer)}")
        return str(shown.json()["device_id"])
