"""Each request is one transaction: an offboarding cut short leaves nothing half done, and the
CA inventory's copy of a revocation, which lies outside the database, is finished later."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select

from labgate.control.certificates import crl_revocations
from labgate.control.runtime import Runtime, utc_now
from labgate.control.tables import Counter, IssuedCertificate, User


def offboarding(api: Any, make_csr: Any) -> tuple[dict[str, str], int, dict[str, str], str]:
    admin = api.admin()
    made = api.post("/api/v1/users", headers=admin, json={"username": "ivy", "role": "viewer"})
    ivy = api.bearer(api.login_fully("ivy", made.json()["one_time_password"])["access_token"])
    _, csr = make_csr("ivy")
    issued = api.post("/api/v1/certificates", headers=ivy, json={"csr_pem": csr})
    assert issued.status_code == 201, issued.text
    return admin, int(made.json()["user"]["id"]), ivy, issued.json()["serial"]


def test_a_disable_that_fails_midway_leaves_the_user_as_they_were(
    api: Any, client: Any, make_csr: Any
) -> None:
    admin, user_id, ivy, serial = offboarding(api, make_csr)
    runtime: Runtime = client.app.state.runtime
    with runtime.sessions() as session, session.begin():
        # The last step of the disable (waking the gateways) will fail.
        session.execute(delete(Counter).where(Counter.name == "changes"))
    failed = api.post(f"/api/v1/users/{user_id}/disable", headers=admin)
    assert failed.status_code == 404
    with runtime.sessions() as session:
        assert session.scalar(select(User.disabled).where(User.id == user_id)) is False
        row = session.get(IssuedCertificate, str(int(serial, 16)))
        assert row is not None and row.revoked is False
    assert runtime.ca.inventory.get(int(serial, 16)).revoked_at is None  # type: ignore[union-attr]
    assert api.get("/api/v1/me", headers=ivy).status_code == 200


def test_a_failed_copy_to_the_ca_inventory_does_not_undo_the_revocation(
    api: Any, client: Any, make_csr: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, user_id, ivy, serial = offboarding(api, make_csr)
    runtime: Runtime = client.app.state.runtime

    def unwritable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(runtime.ca.inventory, "revoke", unwritable)
    assert api.post(f"/api/v1/users/{user_id}/disable", headers=admin).status_code == 200
    monkeypatch.undo()
    number = int(serial, 16)
    assert runtime.ca.inventory.get(number).revoked_at is None  # type: ignore[union-attr]
    with runtime.sessions() as session:
        # What every replica reads, and what the bundles' CRL lists, has it.
        assert number in {r.serial for r in crl_revocations(session, now=utc_now())}
    assert api.get("/api/v1/me", headers=ivy).status_code == 401
    # The next start finishes the copy.
    again = Runtime.open(settings)
    try:
        entry = again.ca.inventory.get(number)
        assert entry is not None and entry.revocation_reason == "privilegeWithdrawn"
    finally:
        again.close()
