"""The one place where errors become HTTP responses: JSON `{code, message}`, nothing more."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from labgate.control import errors

STATUS: tuple[tuple[type[errors.ControlError], int], ...] = (
    (errors.PasswordChangeRequired, 403),
    (errors.Forbidden, 403),
    (errors.CertificateRequired, 401),
    (errors.AuthenticationFailed, 401),
    (errors.Throttled, 429),
    (errors.AccountLocked, 423),
    (errors.NotFound, 404),
    (errors.Gone, 410),
    (errors.DeviceGrantRefused, 400),
    (errors.Conflict, 409),
    (errors.PasswordRejected, 422),
    (errors.InvalidInput, 422),
    (errors.ConfigurationError, 500),
)

HTTP_CODES = {
    400: "bad_request",
    401: "authentication_failed",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "throttled",
}


def status_of(error: errors.ControlError) -> int:
    for kind, status in STATUS:
        if isinstance(error, kind):
            return status
    return 400


def body(
    code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


async def control_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.ControlError)
    headers: dict[str, str] = {}
    if isinstance(error, errors.Throttled | errors.AccountLocked):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    if isinstance(error, errors.AuthenticationFailed):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, errors.DeviceGrantRefused):
        # RFC 8628 section 3.5 / RFC 6749 section 5.2: the poll's outcome is in `error`.
        content: dict[str, object] = {"error": error.code, "code": error.code}
        content["message"] = str(error)
        if error.interval is not None:
            content["interval"] = error.interval
        return JSONResponse(content, status_code=400)
    if isinstance(error, errors.ChainRefused | errors.RecordInvalid):
        # Where a gateway's audit chain broke: the seq and the hashes, for its operator.
        content = {"code": error.code, "message": str(error), "where": error.where}
        return JSONResponse(content, status_code=status_of(error), headers=headers)
    return body(error.code, str(error), status_of(error), headers)


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()))
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return body("invalid_request", "; ".join(problems) or "request body is invalid", 422)


async def http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = HTTP_CODES.get(error.status_code, "error")
    message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
    return body(code, message, error.status_code, dict(error.headers or {}))


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ControlError, control_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # Unexpected exceptions are answered by labgate.control.http.edge, the outermost layer.
