"""Orders, challenges and finalization: the way through, and each way around it refused."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509

from labgate.control.layout import ca_dir

from .conftest import authorize_http01, b64, make_csr, obtain
from .test_accounts import problem


def _verify_with_openssl(settings: Any, chain_pem: bytes, tmp_path: Path) -> str:
    leaf, *rest = x509.load_pem_x509_certificates(chain_pem)
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in rest))
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(ca_dir(settings.data_dir) / "root.crt"),
            "-untrusted",
            str(tmp_path / "chain.pem"),
            "-purpose",
            "sslserver",
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


def _challenge(acme: Any, name: str, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new order for `name` and its challenge of `kind`."""
    order = acme.order(name, kind="ip" if name[0].isdigit() else "dns").json()
    authz = acme.get(order["authorizations"][0]).json()
    (challenge,) = [c for c in authz["challenges"] if c["type"] == kind]
    return order, challenge


def test_http01_order_is_issued_and_verifies_with_openssl(
    acme_peer: Any, make_eab: Any, http01: Any, acme_settings: Any, tmp_path: Path
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _, _, chain = obtain(acme, http01, "a.lab.test", "b.lab.test")
    assert ": OK" in _verify_with_openssl(acme_settings, chain, tmp_path)
    leaf = x509.load_pem_x509_certificates(chain)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["a.lab.test", "b.lab.test"]
    # Validation asked for the name it validates, on the responder's own port.
    assert f"a.lab.test:{http01.port}" in {host for host, _ in http01.requests}


def test_tls_alpn01_validates_an_ip_identifier(
    acme_peer: Any, make_eab: Any, tls_alpn01: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab(dns_suffixes=[], ip_ranges=["127.0.0.0/8"]))
    created, challenge = _challenge(acme, "127.0.0.1", "tls-alpn-01")
    authz = acme.get(created["authorizations"][0]).json()
    assert authz["identifier"] == {"type": "ip", "value": "127.0.0.1"}
    tls_alpn01.answer("127.0.0.1", acme.key_authorization(challenge["token"]), kind="ip")
    answered = acme.post(challenge["url"], {}).json()
    assert answered["status"] == "valid", answered
    assert acme.get(created["authorizations"][0]).json()["status"] == "valid"
    assert tls_alpn01.handshakes >= 1
    _, csr = make_csr("127.0.0.1")
    final = acme.post(created["finalize"], {"csr": b64(csr)})
    assert final.status_code == 200 and final.json()["status"] == "valid", final.text


def test_tls_alpn01_with_a_non_critical_extension_is_invalid(
    acme_peer: Any, make_eab: Any, tls_alpn01: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _created, challenge = _challenge(acme, "a.lab.test", "tls-alpn-01")
    tls_alpn01.answer("a.lab.test", acme.key_authorization(challenge["token"]), critical=False)
    answered = acme.post(challenge["url"], {}).json()
    assert answered["status"] == "invalid"
    assert "critical" in answered["error"]["detail"]


def test_challenge_answered_wrong_is_invalid_and_the_order_cannot_be_finalized(
    acme_peer: Any, make_eab: Any, http01: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    created, challenge = _challenge(acme, "a.lab.test", "http-01")
    # The right token, another account's thumbprint: what a stale or stolen answer looks like.
    http01.answers[challenge["token"]] = f"{challenge['token']}.{'A' * 43}".encode()
    answered = acme.post(challenge["url"], {}).json()
    assert answered["status"] == "invalid"
    assert answered["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    assert acme.get(created["authorizations"][0]).json()["status"] == "invalid"
    # Answering again changes nothing: an invalid challenge stays invalid.
    http01.answers[challenge["token"]] = acme.key_authorization(challenge["token"]).encode()
    assert acme.post(challenge["url"], {}).json()["status"] == "invalid"
    _, csr = make_csr("a.lab.test")
    problem(acme.post(created["finalize"], {"csr": b64(csr)}), "orderNotReady", 403)


def test_http01_redirect_to_another_host_is_not_followed(
    acme_peer: Any, make_eab: Any, http01: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _created, challenge = _challenge(acme, "a.lab.test", "http-01")
    token = challenge["token"]
    http01.answers[token] = acme.key_authorization(token).encode()
    # The other host is this very responder under another name: had validation followed the
    # redirect, the answer there would have been right.
    http01.redirects[token] = f"http://other.test:{http01.port}/.well-known/acme-challenge/x{token}"
    http01.answers["x" + token] = acme.key_authorization(token).encode()
    answered = acme.post(challenge["url"], {}).json()
    assert answered["status"] == "invalid"
    assert "redirect to another host" in answered["error"]["detail"]
    assert all(not host.startswith("other.test") for host, _ in http01.requests)


def test_http01_redirect_on_the_same_host_is_followed(
    acme_peer: Any, make_eab: Any, http01: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _created, challenge = _challenge(acme, "a.lab.test", "http-01")
    token = challenge["token"]
    http01.redirects[token] = f"/.well-known/acme-challenge/moved-{token}"
    http01.answers["moved-" + token] = acme.key_authorization(token).encode()
    assert acme.post(challenge["url"], {}).json()["status"] == "valid"


def test_name_outside_the_eab_policy_is_rejected(acme_peer: Any, make_eab: Any) -> None:
    acme = acme_peer()
    acme.register(make_eab(dns_suffixes=["lab.test"], ip_ranges=["10.1.0.0/16"]))
    body = problem(acme.order("a.lab.test", "evil-lab.test"), "rejectedIdentifier", 400)
    assert [s["identifier"]["value"] for s in body["subproblems"]] == ["evil-lab.test"]
    problem(acme.order("lab.test.evil.example"), "rejectedIdentifier", 400)
    problem(acme.order("10.2.0.1", kind="ip"), "rejectedIdentifier", 400)
    problem(acme.order("*.lab.test"), "rejectedIdentifier", 400)
    problem(acme.order("a.lab.test", kind="email"), "unsupportedIdentifier", 400)
    assert acme.order("10.1.2.3", kind="ip").status_code == 201


def test_another_accounts_key_reaches_no_order_authz_challenge_or_finalize(
    acme_peer: Any, make_eab: Any, http01: Any
) -> None:
    owner, intruder = acme_peer(), acme_peer()
    owner.register(make_eab())
    intruder.register(make_eab())
    created = owner.order("a.lab.test")
    order = created.json()
    authz = owner.get(order["authorizations"][0]).json()
    challenge = authz["challenges"][0]
    problem(intruder.get(created.headers["Location"]), "malformed", 404)
    problem(intruder.get(order["authorizations"][0]), "malformed", 404)
    problem(intruder.post(challenge["url"], {}), "malformed", 404)
    authorize_http01(owner, http01, order)
    _, csr = make_csr("a.lab.test")
    problem(intruder.post(order["finalize"], {"csr": b64(csr)}), "malformed", 404)
    # The owner's kid with the intruder's key: the signature does not verify.
    forged = intruder.post(order["finalize"], {"csr": b64(csr)}, kid=owner.account)
    problem(forged, "unauthorized", 403)
    final = owner.post(order["finalize"], {"csr": b64(csr)}).json()
    problem(intruder.get(final["certificate"]), "malformed", 404)


def test_csr_must_name_exactly_the_orders_names_with_a_key_of_its_own(
    acme_peer: Any, make_eab: Any, http01: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    order = acme.order("a.lab.test").json()
    _, early = make_csr("a.lab.test")
    problem(acme.post(order["finalize"], {"csr": b64(early)}), "orderNotReady", 403)
    authorize_http01(acme, http01, order)
    _, extra = make_csr("a.lab.test", "b.lab.test")
    problem(acme.post(order["finalize"], {"csr": b64(extra)}), "badCSR", 400)
    _, other_cn = make_csr("a.lab.test", common_name="c.lab.test")
    problem(acme.post(order["finalize"], {"csr": b64(other_cn)}), "badCSR", 400)
    _, with_account_key = make_csr("a.lab.test", key=acme.key)
    problem(acme.post(order["finalize"], {"csr": b64(with_account_key)}), "badCSR", 400)
    problem(acme.post(order["finalize"], {"csr": "bm90IGEgQ1NS"}), "badCSR", 400)
    _, right = make_csr("a.lab.test")
    assert acme.post(order["finalize"], {"csr": b64(right)}).json()["status"] == "valid"


def test_orders_per_account_are_rate_limited(acme_settings: Any, make_eab: Any, clock: Any) -> None:
    from fastapi.testclient import TestClient

    from labgate.control.http.app import create_app

    from .conftest import Acme

    limited = acme_settings.model_copy(update={"acme_orders_per_hour": 3})
    with TestClient(create_app(limited, clock=clock), base_url="https://testserver") as http:
        acme, other = (
            Acme(http=http, base="https://testserver"),
            Acme(http=http, base="https://testserver"),
        )
        acme.register(make_eab())
        other.register(make_eab())
        for _ in range(3):
            assert acme.order("a.lab.test").status_code == 201
        refused = acme.order("a.lab.test")
        problem(refused, "rateLimited", 429)
        assert int(refused.headers["Retry-After"]) > 3000
        assert other.order("a.lab.test").status_code == 201  # per account
        clock.advance(3601)
        acme.nonce = None  # the one kept has expired with the hour
        assert acme.order("a.lab.test").status_code == 201


def test_tls_alpn01_validates_a_dns_name(acme_peer: Any, make_eab: Any, tls_alpn01: Any) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _, challenge = _challenge(acme, "a.lab.test", "tls-alpn-01")
    tls_alpn01.answer("a.lab.test", acme.key_authorization(challenge["token"]))
    assert acme.post(challenge["url"], {}).json()["status"] == "valid"


def test_tls_alpn01_naming_another_host_is_invalid(
    acme_peer: Any, make_eab: Any, tls_alpn01: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _, challenge = _challenge(acme, "a.lab.test", "tls-alpn-01")
    tls_alpn01.answer("b.lab.test", acme.key_authorization(challenge["token"]))
    answered = acme.post(challenge["url"], {}).json()
    assert answered["status"] == "invalid"
    assert "not a.lab.test alone" in answered["error"]["detail"]


def test_a_validation_left_processing_by_a_dead_replica_is_taken_over(
    acme_peer: Any, make_eab: Any, http01: Any, acme_settings: Any, clock: Any
) -> None:
    from sqlalchemy import update

    from labgate.control.database import make_engine
    from labgate.control.tables import AcmeChallenge

    acme = acme_peer()
    acme.register(make_eab())
    _, challenge = _challenge(acme, "a.lab.test", "http-01")
    http01.answers[challenge["token"]] = acme.key_authorization(challenge["token"]).encode()
    engine = make_engine(acme_settings.resolved_database_url)
    with engine.begin() as connection:  # claimed by a replica that then died
        connection.execute(
            update(AcmeChallenge)
            .where(AcmeChallenge.token == challenge["token"])
            .values(status="processing", started_at=clock())
        )
    engine.dispose()
    assert acme.post(challenge["url"], {}).json()["status"] == "processing"
    clock.advance(3 * acme_settings.acme_validation_timeout_seconds + 1)
    acme.nonce = None
    assert acme.post(challenge["url"], {}).json()["status"] == "valid"


def test_http01_answer_over_the_size_cap_is_invalid(
    acme_peer: Any, make_eab: Any, http01: Any
) -> None:
    acme = acme_peer()
    acme.register(make_eab())
    _, challenge = _challenge(acme, "a.lab.test", "http-01")
    right = acme.key_authorization(challenge["token"]).encode()
    http01.answers[challenge["token"]] = right + b" " * 4096  # right, then padding to swamp
    answered = acme.post(challenge["url"], {}).json()
    assert answered["status"] == "invalid"
    assert "longer than 1024 bytes" in answered["error"]["detail"]


def test_http01_client_that_never_answers_fails_within_the_timeout(
    acme_settings: Any, make_eab: Any, clock: Any
) -> None:
    import socket
    import time

    from fastapi.testclient import TestClient

    from labgate.control.http.app import create_app

    from .conftest import Acme

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, then says nothing
        quick = acme_settings.model_copy(
            update={
                "acme_http_port": silent.getsockname()[1],
                "acme_validation_timeout_seconds": 0.5,
            }
        )
        with TestClient(create_app(quick, clock=clock), base_url="https://testserver") as http:
            acme = Acme(http=http, base="https://testserver")
            acme.register(make_eab())
            _, challenge = _challenge(acme, "a.lab.test", "http-01")
            started = time.monotonic()
            answered = acme.post(challenge["url"], {}).json()
            took = time.monotonic() - started
    assert answered["status"] == "invalid"
    assert answered["error"]["type"] == "urn:ietf:params:acme:error:connection"
    assert took < 5
