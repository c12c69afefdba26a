"""The agent's local page: `GET /link?instance_id=...`, one route on a tiny HTTP/1.1 listener.

The linking page on the server opens this page as a top-level popup (a page served over HTTPS
cannot fetch a LAN address in the background). The page hands the local secret to its opener by
`postMessage` with the server's origin as the target, so no other page can receive it, and only
when:
  - the socket peer (never a header) is in the agent's local networks,
  - the instance id in the query is this start's,
  - the discovery window is open.
Nothing else is served: no CORS header, no wildcard anywhere, no shutdown, no status. A refusal
is a short plain-text answer with its reason code. The script carries a per-response nonce that
the page's Content-Security-Policy names; nothing else may run or load.

Requests are bounded: the head must fit in `MAX_HEAD` bytes and arrive within `HEAD_SECONDS`,
and one request is answered per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from labgate.agent.locality import Network, is_local
from labgate.agent.reasons import Reason, event
from labgate.agent.secret import LocalSecret
from labgate.agent.window import Window

# A browser's GET for this page is a few hundred bytes of headers; 8 KiB leaves room for
# cookies a browser might attach for the address, and no more.
MAX_HEAD = 8192
# A browser sends its request head at once; a peer that dribbles it is not a browser.
HEAD_SECONDS = 5.0
ROUTE = "/link"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    status: int
    reason: Reason | None
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass(slots=True, kw_only=True)
class LocalPage:
    instance_id: str
    secret: LocalSecret
    window: Window
    networks: tuple[Network, ...]
    server_origin: str
    user_code: Callable[[], str | None] = lambda: None

    def answer(self, method: str, target: str, peer: str) -> Answer:
        """What this page says to `method target` from socket peer `peer`."""
        if not is_local(peer, self.networks):
            return self._refuse(403, Reason.NOT_LOCAL, f"peer {peer} is outside the local networks")
        url = urlsplit(target)
        if url.path != ROUTE:
            return self._refuse(404, Reason.NOT_FOUND, f"{peer} asked for another path")
        if method != "GET":
            return self._refuse(405, Reason.METHOD_NOT_ALLOWED, f"{peer} sent {method[:16]!r}")
        asked = parse_qs(url.query, max_num_fields=4).get("instance_id", [])
        if len(asked) != 1 or not secrets.compare_digest(
            asked[0].encode(), self.instance_id.encode()
        ):
            return self._refuse(403, Reason.INSTANCE_MISMATCH, f"{peer} named another instance")
        if not self.window.is_open:
            code = self.user_code()
            if code is not None:  # the code flow: the code for people to read, no secret
                return self._code_page(code)
            return self._refuse(
                410, self.window.ended or Reason.WINDOW_CLOSED, f"{peer} asked after the window"
            )
        event(
            Reason.SECRET_HANDED_OUT,
            f"local page handed the secret to {peer} for {self.server_origin}",
        )
        return self._page()

    def _page(self) -> Answer:
        nonce = secrets.token_urlsafe(18)
        message = json.dumps({"instance_id": self.instance_id, "secret": self.secret.reveal()})
        origin = json.dumps(self.server_origin)
        # JSON of base64url text and an origin: no '<' can appear, but escape it anyway so the
        # script element cannot be closed from inside.
        script = (
            f"(function(){{var o=window.opener;if(o){{o.postMessage({message},{origin});"
            f"window.close();}}else{{document.getElementById('s').textContent="
            f"'Open this page from the linking page of '+{origin}+'.';}}}})();"
        ).replace("<", "\\u003c")
        code = self.user_code()
        code_line = f"<p>Or enter code <b>{html.escape(code)}</b>.</p>" if code else ""
        body = (
            "<!doctype html><html><head><meta charset=utf-8><title>labgate agent</title></head>"
            f"<body><p id=s>Linking this device to {html.escape(self.server_origin)}...</p>"
            f'{code_line}<script nonce="{nonce}">{script}</script></body></html>'
        ).encode()
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        )
        return Answer(
            status=200,
            reason=None,
            body=body,
            headers=(
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy", csp),
                ("Cache-Control", "no-store"),
                ("Referrer-Policy", "no-referrer"),
                ("X-Content-Type-Options", "nosniff"),
                ("Cross-Origin-Resource-Policy", "same-origin"),
            ),
        )

    def _code_page(self, code: str) -> Answer:
        body = (
            "<!doctype html><html><head><meta charset=utf-8><title>labgate agent</title></head>"
            f"<body><p>Enter code <b>{html.escape(code)}</b> on the linking page of "
            f"{html.escape(self.server_origin)}.</p></body></html>"
        ).encode()
        return Answer(
            status=200,
            reason=None,
            body=body,
            headers=(
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
                ("Cache-Control", "no-store"),
                ("Referrer-Policy", "no-referrer"),
                ("X-Content-Type-Options", "nosniff"),
            ),
        )

    @staticmethod
    def _refuse(status: int, reason: Reason, detail: str) -> Answer:
        event(reason, f"local page refused: {detail}")
        return Answer(
            status=status,
            reason=reason,
            body=f"refused: {reason.value}\n".encode(),
            headers=(("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")),
        )


_STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    410: "Gone",
    431: "Request Header Fields Too Large",
}


def render(answer: Answer) -> bytes:
    head = [f"HTTP/1.1 {answer.status} {_STATUS_TEXT.get(answer.status, 'Error')}"]
    head += [f"{name}: {value}" for name, value in answer.headers]
    head += [f"Content-Length: {len(answer.body)}", "Connection: close", "", ""]
    return "\r\n".join(head).encode("latin-1") + answer.body


async def _read_head(reader: asyncio.StreamReader) -> bytes | Reason:
    """The request head up to its blank line, or the reason it was refused."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_SECONDS)
    except asyncio.LimitOverrunError:
        return Reason.REQUEST_TOO_LARGE
    except (TimeoutError, asyncio.IncompleteReadError):
        return Reason.REQUEST_TIMEOUT


class Listener:
    """The asyncio server for one LocalPage; `start()` binds, `close()` stops."""

    def __init__(self, page: LocalPage, host: str, port: int) -> None:
        self.page = page
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        """Bind and return `HOST:PORT` as bound (the port is real when 0 was asked)."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_HEAD, reuse_address=True
        )
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        host = f"[{sock[0]}]" if ":" in sock[0] else sock[0]
        return f"{host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else ""
        try:
            head = await _read_head(reader)
            if isinstance(head, Reason):
                status = 431 if head is Reason.REQUEST_TOO_LARGE else 408
                answer = LocalPage._refuse(status, head, f"{peer}: {head.value}")
            else:
                answer = self._answer(head, peer)
            writer.write(render(answer))
            await asyncio.wait_for(writer.drain(), HEAD_SECONDS)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), HEAD_SECONDS)

    def _answer(self, head: bytes, peer: str) -> Answer:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return LocalPage._refuse(
                400, Reason.BAD_REQUEST, f"{peer}: not an HTTP/1.x request line"
            )
        return self.page.answer(parts[0], parts[1], peer)
