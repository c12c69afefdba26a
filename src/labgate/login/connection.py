"""HTTPS to the control server for a person's commands, trusting only the CA given.

The server's `{code, message}` error body becomes `ServerRefused(status, code, message)`; an
unreachable server or a 5xx becomes `ServerAway` (the renewal loop retries those); a server whose
certificate does not chain to the trusted CA is `UntrustedServer` (never retried: that is not a
server that is away but one that is not ours). Only `https` URLs are taken: the password and the
tokens never cross a network in clear.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from labgate.login.errors import InvalidServer, ServerAway, ServerRefused, UntrustedServer

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def server_url(url: str) -> str:
    """`https://host[:port]` from what the person typed; refused unless https with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidServer(f"{url!r} is not an https:// URL with a host name")
    if parts.username or parts.password:
        raise InvalidServer(f"{parts.hostname}: the URL must not carry a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidServer(f"{url!r}: give the server's address only, without a path")
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        raise InvalidServer(f"{url!r} has a port that is not a number from 0 to 65535") from None
    return f"https://{host}" + (f":{port}" if port not in (None, 443) else "")


def trust(server_ca: Path | None) -> ssl.SSLContext:
    """A client context trusting `server_ca` alone (the system's store when None)."""
    if server_ca is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(server_ca))
    except ssl.SSLError:
        raise InvalidServer(f"{server_ca} holds no PEM CA certificate") from None


class Connection:
    """One server, one trust anchor; `call` returns the JSON body of a 2xx answer."""

    def __init__(self, url: str, server_ca: Path | None) -> None:
        self.url = url
        self.server_ca = server_ca
        self._http = httpx.Client(base_url=url, verify=trust(server_ca), timeout=TIMEOUT)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise self._failure(error) from None
        if response.is_success:
            try:
                return response.json() if response.content else None
            except ValueError:
                raise ServerAway(f"{self.url}{path} answered with no JSON body") from None
        if response.is_server_error:
            raise ServerAway(f"{self.url}{path} answered {response.status_code}; try again later")
        code, message = _said(response)
        raise ServerRefused(response.status_code, code, message)

    def _failure(self, error: httpx.HTTPError) -> Exception:
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                trusted = self.server_ca or "the system's trust store"
                return UntrustedServer(
                    f"{self.url}: the server's certificate does not chain to {trusted} "
                    f"({cause.verify_message}); give its CA with --server-ca FILE"
                )
            cause = cause.__cause__ or cause.__context__
        return ServerAway(f"{self.url}: cannot reach the server ({type(error).__name__}: {error})")


def _said(response: httpx.Response) -> tuple[str, str]:
    """The server's `{code, message}` error body (it never carries a secret)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        return data["code"], str(data.get("message") or "")[:300]
    return f"http_{response.status_code}", ""
