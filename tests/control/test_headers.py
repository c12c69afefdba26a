"""Security headers on every response, and errors as JSON with a stable code and no insides."""

from __future__ import annotations

from typing import Any

import pytest

EXPECTED = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "strict-transport-security": "max-age=63072000",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("GET", "/healthz", None, 200),
        ("GET", "/openapi.json", None, 200),
        ("GET", "/api/v1/me", None, 401),
        ("GET", "/no/such/page", None, 404),
        ("DELETE", "/api/v1/auth/login", None, 405),
        ("POST", "/api/v1/auth/login", {"username": "admin"}, 422),
        ("POST", "/api/v1/auth/login", {"username": "a", "password": "b", "extra": 1}, 422),
    ],
)
def test_every_response_has_security_headers_and_json_errors(
    api: Any, method: str, path: str, body: Any, status: int
) -> None:
    response = api.request(method, path, json=body)
    assert response.status_code == status
    for name, fragment in EXPECTED.items():
        assert fragment in response.headers[name]
    if status >= 400:
        error = response.json()
        assert set(error) == {"code", "message"}
        assert error["code"] and error["message"]
        assert "Traceback" not in response.text


def test_validation_error_names_the_field(api: Any) -> None:
    response = api.post("/api/v1/auth/login", json={"username": "admin"})
    assert response.json()["code"] == "invalid_request"
    assert "password" in response.json()["message"]


def test_errors_never_echo_the_password(api: Any) -> None:
    secret = "my very secret password 123"
    response = api.post("/api/v1/auth/login", json={"username": "admin", "password": secret})
    assert secret not in response.text
    oversized = api.post("/api/v1/auth/login", json={"username": "admin", "password": "p" * 5000})
    assert oversized.status_code == 422
    assert "p" * 100 not in oversized.text


def test_no_documentation_pages_that_would_need_foreign_scripts(api: Any) -> None:
    assert api.get("/docs").status_code == 404
    assert api.get("/redoc").status_code == 404


def test_metrics_and_jwks_are_served(api: Any) -> None:
    api.get("/healthz")
    metrics = api.get("/metrics")
    assert "labgate_http_requests_total" in metrics.text
    keys = api.get("/.well-known/jwks.json").json()["keys"]
    assert [k["alg"] for k in keys] == ["EdDSA"]
    assert all("d" not in k for k in keys)  # public halves only
