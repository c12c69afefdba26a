"""A linked device for the jobs tests: enrolled by code on the live server, then speaking over
mutual TLS with its own certificate and certificate-bound token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .conftest import Api


@dataclass
class LinkedDevice:
    id: str
    http: Api
    token: str
    chain_pem: str
    key_pem: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def next(self) -> Any:
        return self.http.get(f"/api/v1/devices/{self.id}/jobs/next", headers=self.headers)

    def report(self, job_id: str, status: str, version: int, **details: Any) -> Any:
        return self.http.post(
            f"/api/v1/devices/{self.id}/jobs/{job_id}/report",
            headers=self.headers,
            json={"status": status, "expected_version": version, "status_details": details},
        )


def enrol(api: Api, owner: dict[str, str], make_csr: Any, mtls: Any, name: str) -> LinkedDevice:
    """A device owned by `owner`, its certificate, and its token refreshed over mutual TLS
    (so bound to that certificate), as a linked agent holds them."""
    created = api.create_device(owner, name)
    device_id = created["device"]["id"]
    key_pem, csr = make_csr(device_id)
    issued = api.post(
        "/api/v1/certificates",
        headers=api.bearer(created["credentials"]["access_token"]),
        json={"csr_pem": csr},
    )
    assert issued.status_code == 201, issued.text
    chain = issued.json()["chain_pem"]
    http = mtls(name, chain, key_pem)
    bound = http.refresh(created["credentials"]["refresh_token"])
    assert bound.status_code == 200, bound.text
    return LinkedDevice(
        id=device_id,
        http=http,
        token=bound.json()["access_token"],
        chain_pem=chain,
        key_pem=key_pem,
    )


def create_job(api: Api, headers: dict[str, str], device_id: str, type: str, **extra: Any) -> Any:
    return api.post(
        "/api/v1/jobs", headers=headers, json={"type": type, "device_id": device_id, **extra}
    )
