"""HTTPS to the control server: one client per credential, errors as the agent's own.

The server's `{code, message}` error body becomes `ServerRefused(status, code)`; an unreachable
server or a 5xx becomes `ServerAway`, which the caller retries with backoff. The client presents
the device certificate as its TLS client certificate once there is one.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from labgate.agent.errors import InvalidOption, ServerAway, ServerRefused

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def origin_of(url: str) -> str:
    """`https://host[:port]` exactly as a browser writes the origin (default port dropped)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidOption(f"--server: {url!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise InvalidOption("--server: the URL must not carry a user name or password")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def tls_context(server_ca: Path, device_pem: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server_ca))
    if device_pem is not None:
        context.load_cert_chain(str(device_pem))
    return context


class ControlClient:
    def __init__(self, url: str, context: ssl.SSLContext, *, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(base_url=self.url, verify=context, timeout=TIMEOUT)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON body or None) for 2xx; raises for anything else."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = await self._http.request(
                method,
                path,
                json=body,
                headers=headers,
                timeout=TIMEOUT if timeout is None else httpx.Timeout(timeout, connect=10.0),
            )
        except httpx.HTTPError as error:
            raise ServerAway(f"{self.url}: {type(error).__name__}: {error}") from None
        if response.status_code >= 500:
            raise ServerAway(f"{self.url}{path}: {response.status_code}")
        data: Any = None
        if response.content:
            try:
                data = response.json()
            except ValueError:
                data = None
        if response.status_code >= 300:
            code, message = _error(data, response.status_code)
            raise ServerRefused(response.status_code, code, message)
        return response.status_code, data


def _error(data: Any, status: int) -> tuple[str, str]:
    if isinstance(data, dict):
        inner = data.get("detail")
        detail: dict[str, Any] = inner if isinstance(inner, dict) else data
        code = detail.get("code") or detail.get("error")
        message = detail.get("message") or detail.get("error_description") or ""
        if isinstance(code, str):
            return code, str(message)[:300]
    return f"http_{status}", ""
