"""ACME problems become RFC 7807 problem documents (`application/problem+json`), with the status
code of their type, a fresh `Replay-Nonce` (a client that got badNonce retries with it) and the
directory as `Link: rel="index"`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from labgate.control.acme import errors, nonces
from labgate.control.acme.context import Urls
from labgate.control.acme.jws import ALGORITHMS
from labgate.control.runtime import Runtime

PROBLEM_TYPE = "application/problem+json"

STATUS: tuple[tuple[type[errors.AcmeProblem], int], ...] = (
    (errors.NotFound, 404),
    (errors.MethodNotAllowed, 405),
    (errors.UnsupportedMediaType, 415),
    (errors.Conflict, 409),
    (errors.Unauthorized, 403),
    (errors.OrderNotReady, 403),
    (errors.RateLimited, 429),
    (errors.ExternalAccountRequired, 400),
)


def status_of(problem: errors.AcmeProblem) -> int:
    for kind, status in STATUS:
        if isinstance(problem, kind):
            return status
    return 500 if problem.kind == "serverInternal" else 400


def base_url(runtime: Runtime, request: Request) -> str:
    """The configured base URL, or the scheme and Host this request came with."""
    configured = runtime.settings.acme_base_url
    if configured:
        return configured.rstrip("/")
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}"


def acme_headers(runtime: Runtime, urls: Urls, session: Session | None = None) -> dict[str, str]:
    """What every ACME response carries: a fresh nonce and the directory."""
    return {
        "Replay-Nonce": nonces.issue(runtime.engine, now=runtime.clock(), session=session),
        "Link": f'<{urls.directory}>;rel="index"',
    }


def problem_document(problem: errors.AcmeProblem, status: int) -> dict[str, Any]:
    document: dict[str, Any] = {"type": problem.type, "detail": problem.detail, "status": status}
    if problem.subproblems:
        document["subproblems"] = [
            {
                "type": errors.NAMESPACE + sub.kind,
                "detail": sub.detail,
                "identifier": sub.identifier,
            }
            for sub in problem.subproblems
        ]
    if isinstance(problem, errors.BadSignatureAlgorithm):
        document["algorithms"] = list(ALGORITHMS)
    return document


async def acme_problem(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.AcmeProblem)
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    urls = Urls(base=base_url(runtime, request))
    status = status_of(error)
    headers = await run_in_threadpool(acme_headers, runtime, urls)
    if error.location is not None:
        headers["Location"] = error.location
    if isinstance(error, errors.RateLimited):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return JSONResponse(
        problem_document(error, status),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_TYPE,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.AcmeProblem, acme_problem)
