"""`create_app(settings)`: the control server's FastAPI application.

Nothing is built at import time; the runtime (database engine, keys, CA) is opened here, once
per application, and closed when the application shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from labgate import __version__
from labgate.control import keystore
from labgate.control.http import console, problems
from labgate.control.http import errors as http_errors
from labgate.control.http.edge import Edge
from labgate.control.http.routers import (
    acme,
    acme_eab,
    auth,
    certificates,
    device_codes,
    devices,
    discovery,
    gateways,
    grants,
    jobs,
    linkpage,
    me,
    public,
    trail,
    tuf,
    unlink,
    users,
)
from labgate.control.releases import ReleaseService
from labgate.control.runtime import Clock, Runtime, utc_now
from labgate.control.settings import ControlSettings
from labgate.control.sweeper import JobSweeper


def create_app(settings: ControlSettings, *, clock: Clock = utc_now) -> FastAPI:
    runtime = Runtime.open(settings, clock=clock)
    releases = ReleaseService.from_settings(
        settings, passphrase=lambda: keystore.load_passphrase(settings), clock=clock
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeper = JobSweeper(runtime)
        sweeper.start()
        resigning = None
        if releases is not None and releases.online is not None:
            resigning = asyncio.create_task(releases.keep_fresh())
        try:
            yield
        finally:
            if resigning is not None:
                resigning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resigning
            sweeper.stop()
            runtime.close()

    app = FastAPI(
        title="labgate control server",
        version=__version__,
        # No HTML documentation pages: they would need scripts from elsewhere, which the strict
        # Content-Security-Policy forbids. The schema is at /openapi.json.
        docs_url=None,
        redoc_url=None,
        # Starlette's slash redirect builds an absolute URL from the Host header, which the
        # client chooses: `/users/` would send a browser to any site. A path is exact, or 404.
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.releases = releases
    for module in (
        auth,
        me,
        users,
        devices,
        grants,
        certificates,
        gateways,
        public,
        discovery,
        device_codes,
        unlink,
        linkpage,
        acme,
        acme_eab,
        trail,
        jobs,
        tuf,
    ):
        app.include_router(module.router)
    console.install(app)
    http_errors.install(app)
    problems.install(app)
    app.add_middleware(Edge, metrics=runtime.metrics)
    return app
