"""`labgate link`: a person on the device's network does the browser's part from a terminal.

Log in, list the devices announcing from this public address, read the chosen device's local
page exactly as the browser's popup would (a plain GET from this machine, so the agent's own
locality check applies), post the secret to the server, and wait for the link to finish.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from labgate.agent.errors import AgentError, ServerRefused
from labgate.agent.locality import default_networks, is_local

# The agent's page carries its message as the first argument of postMessage.
_MESSAGE = re.compile(r"postMessage\((\{[^{}]*\}),")
FINAL = ("linked", "refused", "expired")
NETWORKS = default_networks()


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    instance_id: str
    local_address: str
    hostname: str
    model: str
    serial: str
    link_page: str


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        try:
            body = response.json()
        except ValueError:
            body = {}
        detail = body.get("detail", body) if isinstance(body, dict) else {}
        code = (
            detail.get("code", f"http_{response.status_code}") if isinstance(detail, dict) else ""
        )
        message = detail.get("message", "") if isinstance(detail, dict) else ""
        raise ServerRefused(response.status_code, str(code), str(message))
    return response.json() if response.content else None


def login(http: httpx.Client, username: str, password: str) -> str:
    body = _check(
        http.post("/api/v1/auth/login", json={"username": username, "password": password})
    )
    if body.get("password_change_required"):
        raise AgentError(f"{username} must change the password first (log in on the server's page)")
    return str(body["access_token"])


def discover(http: httpx.Client, token: str) -> list[Found]:
    body = _check(http.get("/api/v1/discovery", headers={"Authorization": f"Bearer {token}"}))
    if body.get("crowded"):
        raise AgentError(
            f"more devices announce from {body.get('public_address')} than may be listed; "
            "link by code instead"
        )
    return [
        Found(**{k: str(d[k]) for k in Found.__dataclass_fields__}) for d in body.get("devices", [])
    ]


def read_secret(found: Found, *, timeout: float = 10.0) -> str:
    """The secret from the agent's page, as the popup gets it; the agent's refusal otherwise."""
    url = urlsplit(found.link_page)
    # The server names the page from the address the agent announced; still, this command
    # only ever asks a local-network address for it, and only for the one route.
    if url.scheme != "http" or url.path != "/link" or not is_local(url.hostname or "", NETWORKS):
        raise AgentError(f"link page {found.link_page!r} is not an agent's local page")
    try:
        response = httpx.get(found.link_page, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as error:
        raise AgentError(f"cannot reach the device's page {found.link_page}: {error}") from None
    if response.status_code != 200:
        raise AgentError(f"the device's page refused: {response.text.strip()[:80]}")
    match = _MESSAGE.search(response.text)
    if match is None:
        raise AgentError("the device's page carries no linking message")
    message = json.loads(match.group(1))
    if message.get("instance_id") != found.instance_id:
        raise AgentError("the device's page is for another instance")
    return str(message["secret"])


def link(
    http: httpx.Client,
    token: str,
    found: Found,
    *,
    wait_seconds: float = 60.0,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    secret = read_secret(found)
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/v1/discovery/{found.instance_id}/link"
    _check(
        http.post(path, headers=headers, json={"instance_id": found.instance_id, "secret": secret})
    )
    del secret
    progress("queued")
    deadline = time.monotonic() + wait_seconds
    state: dict[str, Any] = {"state": "queued"}
    while time.monotonic() < deadline:
        state = _check(http.get(path, headers=headers))
        if state.get("state") in FINAL:
            return state
        time.sleep(0.5)
    return state
