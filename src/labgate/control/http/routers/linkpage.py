"""`GET /link`: where a device's code leads a person (RFC 8628 `verification_uri`): the console's
linking page, `/console/link` (log in first, then link by local discovery or by code); and the
console's script, style and icon as static files.

The linking page alone sends `Cross-Origin-Opener-Policy: same-origin-allow-popups`: it opens the
agent's local page as a popup, and that page must see `window.opener` to post the secret back
(every other response keeps `same-origin`).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response

router = APIRouter(tags=["linking page"], include_in_schema=False)

STATIC = {
    "link.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@functools.cache
def _static(name: str) -> bytes:
    return resources.files("labgate.control.http").joinpath("static", name).read_bytes()


@router.get("/link")
def link_page(user_code: Annotated[str, Query(max_length=32)] = "") -> Response:
    query = f"?{urlencode({'user_code': user_code})}" if user_code else ""
    return RedirectResponse(f"/console/link{query}", status_code=303)


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    kind = STATIC.get(name)
    if kind is None:
        return Response(status_code=404, content=b'{"code":"not_found","message":"no such file"}')
    return Response(_static(name), media_type=kind)
