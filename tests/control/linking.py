"""Helpers shared by the linking tests: an agent's side of the wire protocol, spoken plainly."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.testclient import TestClient

from labgate.auth.linkproof import new_local_secret, proof_matches


def peer(client: TestClient, address: str) -> TestClient:
    """Another client of the same application whose socket peer is `address`."""
    return TestClient(client.app, base_url="https://testserver", client=(address, 40000))


class FakeAgent:
    """What `labgate agent` does over HTTP, with a real secret, proof check and CSR."""

    def __init__(self, http: Any, *, local: str = "192.168.1.20:46001", model: str = "QS5") -> None:
        self.http = http
        self.instance_id = secrets.token_urlsafe(16)
        self.secret = new_local_secret()
        self.local = local
        self.model = model
        self.serial = "SN-" + secrets.token_hex(3)
        self.token: str | None = None

    def announce(self, **override: Any) -> Any:
        body = {
            "instance_id": self.instance_id,
            "local_address": self.local,
            "hostname": "bench-" + self.serial,
            "model": self.model,
            "serial": self.serial,
            "announce_token": self.token,
        }
        body.update(override)
        response = self.http.post("/api/v1/discovery/announce", json=body)
        if response.status_code == 201:
            self.token = response.json()["announce_token"]
        return response

    def fetch(self, wait: float = 0) -> Any:
        return self.http.post(
            f"/api/v1/discovery/{self.instance_id}/verification",
            json={"announce_token": self.token, "wait_seconds": wait},
        )

    def proof_ok(self, verification: dict[str, Any]) -> bool:
        return proof_matches(
            verification["proof"],
            self.secret,
            instance_id=self.instance_id,
            verification_id=verification["verification_id"],
            device_id=verification["device_id"],
        )

    def complete(self, verification: dict[str, Any], csr_pem: str) -> Any:
        return self.http.post(
            f"/api/v1/discovery/{self.instance_id}/complete",
            json={
                "announce_token": self.token,
                "verification_id": verification["verification_id"],
                "csr_pem": csr_pem,
            },
        )

    def refuse(self, verification: dict[str, Any]) -> Any:
        return self.http.post(
            f"/api/v1/discovery/{self.instance_id}/refuse",
            json={
                "announce_token": self.token,
                "verification_id": verification["verification_id"],
                "reason": "secret_mismatch",
            },
        )


def link(browser: Any, headers: dict[str, str], instance_id: str, secret: str) -> Any:
    return browser.post(
        f"/api/v1/discovery/{instance_id}/link",
        headers=headers,
        json={"instance_id": instance_id, "secret": secret},
    )
