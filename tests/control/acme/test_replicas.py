"""Two replicas on one database: what one hands out, the other honours, once; and the settings
that change what ACME accepts (EAB made optional, a fixed base URL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from labgate.control.http.app import create_app

from .conftest import Acme, authorize_http01
from .test_accounts import problem


@pytest.fixture
def second_replica(acme_settings: Any, clock: Any) -> Iterator[TestClient]:
    with TestClient(create_app(acme_settings, clock=clock), base_url="https://testserver") as other:
        yield other


def test_a_nonce_from_one_replica_is_used_once_on_another(
    acme_peer: Any, make_eab: Any, second_replica: TestClient
) -> None:
    first = acme_peer()
    first.register(make_eab())
    other = Acme(http=second_replica, base=first.base, key=first.key, account=first.account)
    nonce = first.fresh_nonce()
    assert other.post(first.account, None, nonce=nonce).status_code == 200
    problem(first.post(first.account, None, nonce=nonce), "badNonce", 400)
    problem(other.post(first.account, None, nonce=nonce), "badNonce", 400)


def test_an_order_placed_on_one_replica_is_finished_on_another(
    acme_peer: Any, make_eab: Any, http01: Any, second_replica: TestClient
) -> None:
    from .conftest import b64, make_csr

    first = acme_peer()
    first.register(make_eab())
    created = first.order("a.lab.test")
    other = Acme(http=second_replica, base=first.base, key=first.key, account=first.account)
    authorize_http01(other, http01, created.json())
    _, csr = make_csr("a.lab.test")
    final = first.post(created.json()["finalize"], {"csr": b64(csr)})
    assert final.json()["status"] == "valid", final.text
    assert other.get(final.json()["certificate"]).status_code == 200


def test_eab_optional_only_by_the_unsafe_setting(acme_settings: Any, clock: Any) -> None:
    open_settings = acme_settings.model_copy(update={"acme_unsafe_eab_optional": True})
    with TestClient(create_app(open_settings, clock=clock), base_url="https://testserver") as http:
        acme = Acme(http=http, base="https://testserver")
        assert acme.directory()["meta"]["externalAccountRequired"] is False
        assert acme.register(None).status_code == 201
        assert acme.order("anything.example").status_code == 201
    # The setting turned off again: the account without a binding may order nothing.
    with TestClient(create_app(acme_settings, clock=clock), base_url="https://testserver") as http:
        again = Acme(http=http, base="https://testserver", key=acme.key, account=acme.account)
        problem(again.order("anything.example"), "rejectedIdentifier", 400)


def test_with_a_base_url_set_a_jws_for_the_host_the_client_chose_is_refused(
    acme_settings: Any, make_eab: Any, clock: Any
) -> None:
    fixed = acme_settings.model_copy(update={"acme_base_url": "https://ca.lab.test:8443"})
    with TestClient(create_app(fixed, clock=clock), base_url="https://testserver") as http:
        acme = Acme(http=http, base="https://testserver")
        directory = acme.directory()
        assert directory["newAccount"] == "https://ca.lab.test:8443/acme/new-account"
        # Signed for the Host it connected to, not the server's configured URL.
        problem(acme.register(None), "unauthorized", 403)
