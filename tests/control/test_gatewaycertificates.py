"""A gateway renews its own certificates through `POST /api/v1/gateways/{name}/certificates`, over
real mutual TLS against a running server; and every way of getting past the checks fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from labgate.control.keystore import load_passphrase
from labgate.control.layout import ca_dir
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile

from .conftest import LiveServer

SITE_NAMES = ["qs5-bench3", "gw.lab.example"]


@pytest.fixture
def ca(live_server: LiveServer) -> Iterator[CertificateAuthority]:
    """The server's own CA (as `labgate ca issue` beside it opens it)."""
    settings = live_server.settings
    with CertificateAuthority.open(
        ca_dir(settings.data_dir), passphrase=load_passphrase(settings)
    ) as opened:
        yield opened


@pytest.fixture
def site(ca: CertificateAuthority, mtls: Any) -> Any:
    """Gateway site-1 with the certificate an operator issued it, connected by it."""
    issued = ca.issue(Profile.GATEWAY, "site-1", dns=SITE_NAMES, ips=["127.0.0.1"])
    ca.handed_out(issued)
    assert issued.key_pem is not None
    return mtls("site-1", issued.chain_pem, issued.key_pem), issued


def _csr(
    common_name: str,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    key: Any = None,
) -> tuple[Any, str]:
    import ipaddress

    from labgate.pki import keys

    key = key or keys.generate(keys.KeyType.ECDSA_P256)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def _ask(api: Any, csr: str, *, name: str = "site-1", purpose: str = "server") -> Any:
    return api.post(
        f"/api/v1/gateways/{name}/certificates", json={"csr_pem": csr, "purpose": purpose}
    )


def test_a_gateway_renews_its_server_certificate_with_a_new_key_and_the_same_names(
    site: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    api, current = site
    key, csr = _csr(
        "site-1", dns=tuple(SITE_NAMES), ips=("127.0.0.1",), uris=("labgate:gateway:site-1",)
    )
    response = _ask(api, csr)
    assert response.status_code == 201, response.text
    body = response.json()
    certificate = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    assert certificate.serial_number != current.serial
    assert body["identity"] == "labgate:gateway:site-1"
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(SITE_NAMES)
    assert certificate.public_key() == key.public_key()  # the key the gateway made, not ours
    lifetime = certificate.not_valid_after_utc - datetime.now(UTC)
    assert 89.9 < lifetime.total_seconds() / 86400 <= 90  # gateway_certificate_seconds: 90 days
    # It is the gateway's from now on: the new certificate renews in its turn.
    entry = ca.inventory.get(certificate.serial_number)
    assert entry is not None and entry.state == "issued"


def test_the_control_client_certificate_is_renewed_too(site: Any) -> None:
    api, _ = site
    _, csr = _csr("site-1", uris=("labgate:gateway:site-1",))
    response = _ask(api, csr, purpose="client")
    assert response.status_code == 201, response.text


def test_a_revoked_gateway_cannot_renew(site: Any, ca: CertificateAuthority) -> None:
    api, current = site
    ca.revoke(current.serial, "keyCompromise")
    _, csr = _csr("site-1", dns=tuple(SITE_NAMES))
    response = _ask(api, csr)
    assert response.status_code == 403, response.text
    assert "revoked" in response.json()["message"]


def test_a_gateway_revoked_through_the_api_cannot_renew_on_this_replica(
    site: Any, live_server: LiveServer
) -> None:
    api, current = site
    with live_server.api() as admin_api:
        admin = admin_api.admin()
        revoked = admin_api.post(
            f"/api/v1/certificates/{current.serial:x}/revoke",
            headers=admin,
            json={"reason": "cessationOfOperation"},
        )
        assert revoked.status_code == 200, revoked.text
    response = _ask(api, _csr("site-1", dns=tuple(SITE_NAMES))[1])
    assert response.status_code == 403, response.text


def test_a_gateway_asking_in_another_gateways_name_is_refused(site: Any) -> None:
    api, _ = site
    _, csr = _csr("site-2", uris=("labgate:gateway:site-2",))
    response = _ask(api, csr, name="site-2")
    assert response.status_code == 403, response.text
    assert "labgate:gateway:site-1, not labgate:gateway:site-2" in response.json()["message"]


@pytest.mark.parametrize(
    ("csr_names", "why"),
    [
        ({"common_name": "site-2"}, "common name must be 'site-1'"),
        ({"uris": ("labgate:gateway:site-2",)}, "names only labgate:gateway:site-1"),
        ({"uris": ("labgate:user:admin",)}, "names only labgate:gateway:site-1"),
        ({"dns": ("control.lab.example",)}, "control.lab.example, which"),
        ({"dns": ("qs5-bench3", "other-site.example")}, "other-site.example, which"),
        ({"ips": ("127.0.0.2",)}, "127.0.0.2, which"),
    ],
)
def test_a_csr_for_names_the_gateway_does_not_hold_is_refused(
    site: Any, csr_names: dict[str, Any], why: str
) -> None:
    api, _ = site
    names = dict(csr_names)  # the parameter is shared by the database variants: never mutate it
    common_name = names.pop("common_name", "site-1")
    _, csr = _csr(common_name, **names)
    response = _ask(api, csr)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "name_not_owned"
    assert why in response.json()["message"]


def test_names_of_another_gateway_are_not_held_by_this_one(
    site: Any, ca: CertificateAuthority
) -> None:
    api, _ = site
    ca.handed_out(ca.issue(Profile.GATEWAY, "site-2", dns=["site2.lab.example"]))
    response = _ask(api, _csr("site-1", dns=("site2.lab.example",))[1])
    assert response.status_code == 422, response.text


def test_names_of_a_revoked_certificate_are_no_longer_held(
    site: Any, ca: CertificateAuthority
) -> None:
    api, _ = site
    old = ca.issue(Profile.GATEWAY, "site-1", dns=["old-name.lab.example"])
    ca.handed_out(old)
    ca.revoke(old.serial, "superseded")
    response = _ask(api, _csr("site-1", dns=("old-name.lab.example",))[1])
    assert response.status_code == 422, response.text


def test_a_csr_with_a_weak_key_is_refused(site: Any) -> None:
    api, _ = site
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _, csr = _csr("site-1", key=weak)
    response = _ask(api, csr)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "weak_key"
    assert "1024 bits is too short" in response.json()["message"]


def test_a_csr_whose_signature_does_not_verify_is_refused(site: Any) -> None:
    """A CSR for the gateway's names carrying someone else's public key (its signature made by
    another key): the requester would not hold the key it asks a certificate for."""
    from labgate.pki import keys

    api, _ = site
    theirs = keys.generate(keys.KeyType.ECDSA_P256)
    mine = keys.generate(keys.KeyType.ECDSA_P256)
    _, genuine = _csr("site-1", key=theirs)
    csr = x509.load_pem_x509_csr(genuine.encode())
    forged = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(csr.subject)
        .sign(mine, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    # Splice the victim's SubjectPublicKeyInfo into the request signed by another key.
    spki_mine = mine.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki_theirs = theirs.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spliced = forged.replace(spki_mine, spki_theirs)
    pem = x509.load_der_x509_csr(spliced).public_bytes(serialization.Encoding.PEM).decode()
    response = _ask(api, pem)
    assert response.status_code == 422, response.text
    assert "signature does not verify" in response.json()["message"]


def test_without_a_client_certificate_nothing_is_issued(live_server: LiveServer) -> None:
    with live_server.api() as anonymous:
        response = _ask(anonymous, _csr("site-1")[1])
    assert response.status_code == 401, response.text


def test_a_users_certificate_cannot_renew_a_gateways(
    live_server: LiveServer, ca: CertificateAuthority, mtls: Any
) -> None:
    alice = ca.issue(Profile.CLIENT, "alice")
    ca.handed_out(alice)
    assert alice.key_pem is not None
    api = mtls("alice", alice.chain_pem, alice.key_pem)
    response = _ask(api, _csr("site-1", uris=("labgate:gateway:site-1",))[1])
    assert response.status_code == 403, response.text


def test_an_unknown_purpose_is_refused(site: Any) -> None:
    api, _ = site
    response = _ask(api, _csr("site-1")[1], purpose="ca")
    assert response.status_code == 422, response.text


def test_a_renewal_with_the_key_it_already_has_is_refused(site: Any) -> None:
    from labgate.pki import keys

    api, current = site
    assert current.key_pem is not None
    same = keys.load_private(current.key_pem, None, source="the current key")
    response = _ask(api, _csr("site-1", dns=tuple(SITE_NAMES), key=same)[1])
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "key_reused"
