"""The web console: server-rendered pages for people, served by the control server under
`/console` (README: "The console").

Pages are Jinja2 templates with autoescape on and a strict Content-Security-Policy; sessions are
server-side (`labgate.control.console`); every form carries a CSRF token; each page asks the same
domain functions as the API, so the roles are the API's.
"""

from __future__ import annotations

from fastapi import FastAPI

from labgate.control.http.console import (
    audit,
    certificates,
    entry,
    fleet,
    home,
    instruments,
    people,
)


def install(app: FastAPI) -> None:
    for module in (entry, home, people, instruments, fleet, certificates, audit):
        app.include_router(module.router)
    app.include_router(fleet.script_router)
