"""`GET /link`: the minimal linking page (log in, the devices discovered at your address,
"link"; or enter a code), and its script and style as static files.

Server-rendered with Jinja2 (autoescape on); the page holds no inline script or style, so its
Content-Security-Policy allows scripts, styles and fetches from this origin only. It alone sends
`Cross-Origin-Opener-Policy: same-origin-allow-popups`: it opens the agent's local page as a
popup, and that page must see `window.opener` to post the secret back (every other response
keeps `same-origin`).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Annotated

import jinja2
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

router = APIRouter(tags=["linking page"], include_in_schema=False)

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = {
    "link.js": "text/javascript; charset=utf-8",
    "link.css": "text/css; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("labgate.control.http", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


@functools.cache
def _static(name: str) -> bytes:
    return resources.files("labgate.control.http").joinpath("static", name).read_bytes()


@router.get("/link", response_class=HTMLResponse)
def link_page(
    user_code: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    html = _templates().get_template("link.html").render(user_code=user_code)
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": PAGE_POLICY,
            "Cross-Origin-Opener-Policy": "same-origin-allow-popups",
        },
    )


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    kind = STATIC.get(name)
    if kind is None:
        return Response(status_code=404, content=b'{"code":"not_found","message":"no such file"}')
    return Response(_static(name), media_type=kind)
