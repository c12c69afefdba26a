"""Revocation through ACME: by the ordering account, by the certificate's own key; nobody
else. Each revocation is the server's one revocation: in the database, the CRL and the
inventory."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from .conftest import b64, obtain
from .test_accounts import problem


def _der(chain: bytes) -> str:
    return b64(x509.load_pem_x509_certificates(chain)[0].public_bytes(Encoding.DER))


def _revoked(api: Any) -> dict[str, str | None]:
    listed = api.get("/api/v1/certificates?status=revoked", headers=api.admin()).json()
    return {entry["serial"]: entry["revocation_reason"] for entry in listed}


def _serial(chain: bytes) -> str:
    return format(x509.load_pem_x509_certificates(chain)[0].serial_number, "x")


def test_the_ordering_account_revokes_and_the_api_lists_it(
    acme_peer: Any, make_eab: Any, http01: Any, api: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _, _, chain = obtain(acme, http01, "a.lab.test")
    response = acme.post(acme.url("revoke-cert"), {"certificate": _der(chain), "reason": 4})
    assert response.status_code == 200, response.text
    assert response.headers["Replay-Nonce"]
    assert _revoked(api) == {_serial(chain): "superseded"}
    again = acme.post(acme.url("revoke-cert"), {"certificate": _der(chain)})
    problem(again, "alreadyRevoked", 400)


def test_the_certificates_own_key_revokes_without_an_account(
    acme_peer: Any, make_eab: Any, http01: Any, api: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _, key, chain = obtain(acme, http01, "a.lab.test")
    holder = acme_peer(key=key)  # no account: signs with the certificate's key (jwk)
    response = holder.post(
        holder.url("revoke-cert"), {"certificate": _der(chain), "reason": 1}, kid=None
    )
    assert response.status_code == 200, response.text
    assert _revoked(api) == {_serial(chain): "keyCompromise"}


def test_a_key_that_is_neither_the_account_nor_the_certificates_is_refused(
    acme_peer: Any, make_eab: Any, http01: Any, api: Any
) -> None:
    owner, other = acme_peer(), acme_peer()
    owner.register(make_eab())
    other.register(make_eab())
    _, _, chain = obtain(owner, http01, "a.lab.test")
    payload = {"certificate": _der(chain)}
    problem(other.post(other.url("revoke-cert"), payload), "unauthorized", 403)
    stranger = acme_peer(key=ec.generate_private_key(ec.SECP256R1()))
    problem(stranger.post(stranger.url("revoke-cert"), payload, kid=None), "unauthorized", 403)
    # The owner's kid under a stranger's signature does not verify either.
    problem(
        stranger.post(stranger.url("revoke-cert"), payload, kid=owner.account), "unauthorized", 403
    )
    assert _revoked(api) == {}


def test_a_certificate_not_issued_through_acme_is_not_revoked_here(
    acme_peer: Any, make_eab: Any, settings: Any, api: Any
) -> None:
    from labgate.control.layout import server_certificate_path

    acme = acme_peer()
    acme.register(make_eab())
    server = x509.load_pem_x509_certificates(
        server_certificate_path(settings.data_dir).read_bytes()
    )[0]
    payload = {"certificate": b64(server.public_bytes(Encoding.DER))}
    problem(acme.post(acme.url("revoke-cert"), payload), "unauthorized", 403)


def test_an_unknown_reason_is_refused(acme_peer: Any, make_eab: Any, http01: Any, api: Any) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _, _, chain = obtain(acme, http01, "a.lab.test")
    for reason in (6, 7, 11, "keyCompromise", True):
        refused = acme.post(acme.url("revoke-cert"), {"certificate": _der(chain), "reason": reason})
        problem(refused, "badRevocationReason", 400)
    assert _revoked(api) == {}
