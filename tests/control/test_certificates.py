"""Client certificates from CSRs, and device tokens bound to them (RFC 8705), attacked."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509

from labgate.auth.tokens import certificate_thumbprint
from labgate.control.layout import ca_root_path


def request_certificate(api: Any, headers: dict[str, str], csr_pem: str) -> Any:
    return api.post("/api/v1/certificates", headers=headers, json={"csr_pem": csr_pem})


def test_certificate_names_only_the_caller(api: Any, make_csr: Any) -> None:
    headers = api.admin()
    _, csr = make_csr("admin")
    response = request_certificate(api, headers, csr)
    assert response.status_code == 201, response.text
    certificate = x509.load_pem_x509_certificate(response.json()["certificate_pem"].encode())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in san] == ["labgate:user:admin"]
    lifetime = certificate.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(hours=23) < lifetime <= timedelta(days=1, minutes=1)


def test_issued_chain_verifies_with_openssl(api: Any, make_csr: Any, tmp_path: Path) -> None:
    _, csr = make_csr("admin")
    body = request_certificate(api, api.admin(), csr).json()
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(body["certificate_pem"])
    chain = tmp_path / "chain.pem"
    chain.write_text(body["chain_pem"])
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(ca_root_path(api.settings.data_dir)),
            "-untrusted",
            str(chain),
            "-purpose",
            "sslclient",
            str(leaf),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_csr_for_someone_else_is_refused(api: Any, make_csr: Any) -> None:
    headers = api.admin()
    for csr in (
        make_csr("root")[1],
        make_csr("admin", uris=("labgate:user:root",))[1],
        make_csr("admin", uris=("labgate:gateway:site-1",))[1],
        make_csr("admin", dns=("control.example.org",))[1],
    ):
        response = request_certificate(api, headers, csr)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_input"
    garbage = request_certificate(api, headers, "-----BEGIN CERTIFICATE REQUEST-----\nxx\n")
    assert garbage.status_code == 422


def test_device_token_is_bound_to_its_certificate(
    live_server: Any, mtls: Any, make_csr: Any
) -> None:
    with live_server.api() as api:
        owner = api.create_user(api.admin(), "olga", "operator")
        first = api.create_device(owner, "bench-1")
        second = api.create_device(owner, "bench-2")
        certs = {}
        for device in (first, second):
            device_id = device["device"]["id"]
            key, csr = make_csr(device_id)
            headers = api.bearer(device["credentials"]["access_token"])
            issued = request_certificate(api, headers, csr)
            assert issued.status_code == 201, issued.text
            certs[device_id] = (issued.json()["chain_pem"], key)
    first_id, second_id = first["device"]["id"], second["device"]["id"]
    with mtls("first", *certs[first_id]) as own:
        bound = own.refresh(first["credentials"]["refresh_token"])
        assert bound.status_code == 200, bound.text
        token = bound.json()["access_token"]
        cnf = jwt.decode(token, options={"verify_signature": False})["cnf"]["x5t#S256"]
        leaf = x509.load_pem_x509_certificate(certs[first_id][0].encode())
        from cryptography.hazmat.primitives.serialization import Encoding

        assert cnf == certificate_thumbprint(leaf.public_bytes(Encoding.DER))
        assert own.get("/api/v1/me", headers=own.bearer(token)).status_code == 200
        later = own.refresh(bound.json()["refresh_token"])
        assert later.status_code == 200
    # The same token without a certificate, or from another device's certificate: refused.
    with live_server.api() as bare:
        assert bare.get("/api/v1/me", headers=bare.bearer(token)).status_code == 401
        stale = bare.refresh(later.json()["refresh_token"])
        assert stale.status_code == 401
        assert stale.json()["code"] == "certificate_required"
    with mtls("second", *certs[second_id]) as other:
        assert other.get("/api/v1/me", headers=other.bearer(token)).status_code == 401
        stolen = other.refresh(later.json()["refresh_token"])
        assert stolen.status_code == 401


def test_the_servers_own_and_the_cas_certificates_cannot_be_revoked_through_the_api(
    api: Any,
) -> None:
    from labgate.control.layout import ca_issuing_path, server_certificate_path

    admin = api.admin()
    data_dir = api.settings.data_dir
    for path in (
        server_certificate_path(data_dir),
        ca_issuing_path(data_dir),
        ca_root_path(data_dir),
    ):
        serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number
        for reason in ("keyCompromise", "superseded"):
            response = api.post(
                f"/api/v1/certificates/{serial:x}/revoke", headers=admin, json={"reason": reason}
            )
            assert response.status_code == 409, (path.name, response.text)
            assert response.json()["code"] == "own_certificate"
            assert f"{serial:x}" in response.json()["message"]
    listed = api.get("/api/v1/certificates", headers=admin, params={"status": "revoked"})
    assert listed.json() == []


def test_the_identity_filter_folds_case_as_names_are_folded(api: Any, make_csr: Any) -> None:
    admin = api.admin()
    olga = api.create_user(admin, "olga", "operator")
    issued = request_certificate(api, olga, make_csr("olga")[1])
    assert issued.status_code == 201, issued.text
    serial = issued.json()["serial"]
    for spelling in ("labgate:user:olga", "labgate:user:OLGA", "labgate:user:Olga"):
        for who in (admin, olga):  # the administrator, and the holder asking for their own
            listed = api.get("/api/v1/certificates", headers=who, params={"identity": spelling})
            assert listed.status_code == 200, listed.text
            assert [c["serial"] for c in listed.json()] == [serial], (spelling, listed.json())
            assert {c["identity"] for c in listed.json()} == {"labgate:user:olga"}
    # Folding finds no one else's: another name, however spelled, is still someone else.
    other = api.get("/api/v1/certificates", headers=olga, params={"identity": "labgate:user:ADMIN"})
    assert other.json() == []
