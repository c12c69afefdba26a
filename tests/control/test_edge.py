"""The edge of every exchange: security headers, JSON errors, bounded bodies, no insides."""

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
    # The token key, then the jobs key: each marked for its own use, so that a job signed with
    # the token key (or a token signed with the jobs key) is refused by whoever checks `use`.
    assert [(k["alg"], k["use"]) for k in keys] == [("EdDSA", "sig"), ("EdDSA", "labgate-jobs")]
    assert len({k["kid"] for k in keys}) == 2
    assert all("d" not in k for k in keys)  # public halves only


def test_metrics_show_days_left_of_the_served_certificate_chain_and_the_root(api: Any) -> None:
    from cryptography import x509
    from prometheus_client.parser import text_string_to_metric_families

    from labgate.control.layout import ca_issuing_path, ca_root_path, server_certificate_path

    data_dir = api.settings.data_dir
    served = x509.load_pem_x509_certificates(server_certificate_path(data_dir).read_bytes())
    root = x509.load_pem_x509_certificate(ca_root_path(data_dir).read_bytes())
    samples = {
        (s.labels["role"], s.labels["serial"]): s.value
        for family in text_string_to_metric_families(api.get("/metrics").text)
        for s in family.samples
        if s.name == "labgate_certificate_days_left"
    }
    expected = {("server", format(c.serial_number, "x")) for c in served}
    issuing = x509.load_pem_x509_certificate(ca_issuing_path(data_dir).read_bytes())
    assert set(samples) == expected | {
        ("ca-root", format(root.serial_number, "x")),
        ("ca-issuing", format(issuing.serial_number, "x")),
    }
    leaf = samples[("server", format(served[0].serial_number, "x"))]
    assert 0 < leaf <= (served[0].not_valid_after_utc - served[0].not_valid_before_utc).days + 1


def test_unexpected_failure_is_a_bare_json_500_with_headers(settings: Any, clock: Any) -> None:
    """A broken database mid-request: the client gets a code, not the exception."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from labgate.control.http.app import create_app

    app = create_app(settings, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        with app.state.runtime.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE denied_tokens"))
        tokens = client.post("/api/v1/auth/login", json={"username": "admin", "password": "x" * 20})
        assert tokens.status_code == 401
        from labgate.control.layout import ADMIN_PASSWORD_FILE

        password = (settings.data_dir / ADMIN_PASSWORD_FILE).read_text().strip()
        token = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": password}
        ).json()["access_token"]
        response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 500
    assert response.json() == {
        "code": "internal_error",
        "message": "the server could not handle this request",
    }
    assert "denied_tokens" not in response.text
    for name, fragment in EXPECTED.items():
        assert fragment in response.headers[name]


def test_oversized_bodies_are_refused_before_they_are_read(api: Any) -> None:
    huge = {"username": "admin", "password": "p" * 100_000}
    declared = api.post("/api/v1/auth/login", json=huge)
    assert declared.status_code == 413
    assert declared.json()["code"] == "too_large"
    assert "strict-transport-security" in declared.headers

    def chunks() -> Any:  # no Content-Length: the limit counts what arrives
        yield b'{"username": "admin", "password": "'
        for _ in range(20):
            yield b"p" * 8192
        yield b'"}'

    streamed = api.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


HUGE_IDS = [str(2**31), str(2**63), str(2**64 + 1), "9" * 40, "-1", "0"]


@pytest.mark.parametrize("user_id", HUGE_IDS)
def test_ids_the_database_cannot_hold_are_refused_at_the_edge(api: Any, user_id: str) -> None:
    admin = api.admin()
    for method, path in (
        ("GET", f"/api/v1/users/{user_id}"),
        ("POST", f"/api/v1/users/{user_id}/disable"),
        ("POST", f"/api/v1/users/{user_id}/password-reset"),
        ("DELETE", f"/api/v1/grants/{user_id}"),
    ):
        response = api.request(method, path, headers=admin)
        assert response.status_code in (404, 422), (method, path, response.text)
        assert set(response.json()) == {"code", "message"}
    assert api.get("/api/v1/me", headers=admin).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/devices/d-%00",
        "/api/v1/devices/%00",
        "/api/v1/gateways/gw%00/bundle",
        "/api/v1/devices/x%0Ay",
        "/api/v1/devices/%C0%80",
    ],
)
def test_nul_and_control_characters_in_a_path_are_refused(
    api: Any, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = api.get(path, headers=api.admin())
    assert response.status_code in (404, 422), response.text
    assert set(response.json()) == {"code", "message"}
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ad\u0000min", "password": "x" * 20},
        {"username": "admin", "password": "pass\u0000word and more"},
        {"username": "admin\u0007", "password": "x" * 20},
    ],
)
def test_nul_in_any_text_of_a_body_is_refused_naming_the_field(api: Any, body: Any) -> None:
    response = api.post("/api/v1/auth/login", json=body)
    assert response.status_code == 422, response.text
    assert "control character" in response.json()["message"]


def test_nul_in_a_device_name_is_refused(api: Any) -> None:
    response = api.post("/api/v1/devices", headers=api.admin(), json={"name": "bench\u00007"})
    assert response.status_code == 422
    assert "name" in response.json()["message"]


def test_a_trailing_slash_is_never_redirected_to_the_host_header(api: Any) -> None:
    admin = api.admin()
    for path in ("/api/v1/users/", "/api/v1/grants/", "/healthz/", "/api/v1/me/"):
        response = api.get(path, headers={**admin, "Host": "evil.example"}, follow_redirects=False)
        location = response.headers.get("location", "")
        assert "evil.example" not in location, (path, location)
        assert not location.startswith(("http:", "https:", "//")), (path, location)
        assert response.status_code == 404, (path, response.status_code)
        assert response.json()["code"] == "not_found"


def test_an_unexpected_error_logs_no_raw_path(settings: Any, clock: Any, caplog: Any) -> None:
    """The log line for a 500 names the route, not what the client typed into the path."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from labgate.control.http.app import create_app
    from labgate.control.layout import ADMIN_PASSWORD_FILE

    app = create_app(settings, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        password = (settings.data_dir / ADMIN_PASSWORD_FILE).read_text().strip()
        token = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": password}
        ).json()["access_token"]
        with app.state.runtime.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE denied_tokens"))
        marker = "raw-path-marker-7f3a"
        response = client.get(
            f"/api/v1/devices/{marker}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 500
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "internal" in logged or "unhandled" in logged
    assert marker not in logged
