"""A small ACME client of the tests' own, to send exactly what an attacker would: JWS signed
by any key, with any nonce and URL, any payload. Built on `cryptography` alone, so that what it
signs is never shaped by a library's good manners. certbot is the well-behaved peer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi.testclient import TestClient

JOSE = "application/jose+json"
Key = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_of(key: Key) -> dict[str, str]:
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[public.curve.name]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64(numbers.x.to_bytes(size, "big")),
            "y": b64(numbers.y.to_bytes(size, "big")),
        }
    assert isinstance(public, rsa.RSAPublicKey)
    numbers = public.public_numbers()
    return {
        "kty": "RSA",
        "n": b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64(numbers.e.to_bytes(3, "big")),
    }


def thumbprint(key: Key) -> str:
    jwk = jwk_of(key)
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64(hashlib.sha256(canonical).digest())


def alg_of(key: Key) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES384" if key.curve.name == "secp384r1" else "ES256"
    return "RS256"


def sign(key: Key, data: bytes, alg: str) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest = hashes.SHA384() if alg == "ES384" else hashes.SHA256()
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return key.sign(data, PKCS1v15(), hashes.SHA256())


def jws(
    key: Key,
    payload: Any,
    *,
    url: str,
    nonce: str | None,
    kid: str | None = None,
    alg: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """A flattened JWS; `payload` None is POST-as-GET, a dict is JSON, bytes go as they are."""
    protected: dict[str, Any] = {"alg": alg or alg_of(key), "url": url}
    if nonce is not None:
        protected["nonce"] = nonce
    if kid is not None:
        protected["kid"] = kid
    else:
        protected["jwk"] = jwk_of(key)
    protected.update(extra or {})
    if payload is None:
        body = b""
    elif isinstance(payload, bytes):
        body = payload
    else:
        body = json.dumps(payload).encode()
    header_b64, payload_b64 = b64(json.dumps(protected).encode()), b64(body)
    signature = sign(key, f"{header_b64}.{payload_b64}".encode(), str(protected["alg"]))
    return {"protected": header_b64, "payload": payload_b64, "signature": b64(signature)}


def eab_binding(key: Key, *, kid: str, hmac_key: str, url: str) -> dict[str, str]:
    protected = b64(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
    payload = b64(json.dumps(jwk_of(key)).encode())
    raw = base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4))
    mac = hmac.new(raw, f"{protected}.{payload}".encode(), "sha256").digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)}


@dataclass
class Acme:
    """An ACME client over any httpx-like client; keeps the last nonce it was given."""

    http: Any
    base: str
    key: Key = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    account: str | None = None
    nonce: str | None = None

    def url(self, name: str) -> str:
        return f"{self.base}/acme/{name}"

    def directory(self) -> dict[str, Any]:
        response = self.http.get(self.url("directory"))
        assert response.status_code == 200, response.text
        self._keep(response)
        return dict(response.json())

    def fresh_nonce(self) -> str:
        response = self.http.head(self.url("new-nonce"))
        assert response.status_code == 200
        return str(response.headers["Replay-Nonce"])

    def post(
        self,
        url: str,
        payload: Any,
        *,
        key: Key | None = None,
        kid: str | bool | None = True,
        nonce: str | None = None,
        signed_url: str | None = None,
        body: dict[str, str] | None = None,
        **extra: Any,
    ) -> Any:
        """POST a JWS; `kid` True for this client's account, None/False for jwk."""
        if body is None:
            chosen_kid = self.account if kid is True else (kid or None)
            body = jws(
                key or self.key,
                payload,
                url=signed_url or url,
                nonce=nonce or self.nonce or self.fresh_nonce(),
                kid=chosen_kid,
                **extra,
            )
        self.nonce = None
        response = self.http.post(url, content=json.dumps(body), headers={"Content-Type": JOSE})
        self._keep(response)
        return response

    def _keep(self, response: Any) -> None:
        self.nonce = response.headers.get("Replay-Nonce") or self.nonce

    def register(self, eab: dict[str, str] | None, **payload: Any) -> Any:
        body: dict[str, Any] = {"termsOfServiceAgreed": True, **payload}
        if eab is not None:
            body["externalAccountBinding"] = eab_binding(
                self.key, kid=eab["kid"], hmac_key=eab["hmac_key"], url=self.url("new-account")
            )
        response = self.post(self.url("new-account"), body, kid=None)
        if response.status_code in (200, 201):
            self.account = response.headers["Location"]
        return response

    def order(self, *names: str, kind: str = "dns") -> Any:
        identifiers = [{"type": kind, "value": name} for name in names]
        return self.post(self.url("new-order"), {"identifiers": identifiers})

    def get(self, url: str) -> Any:
        return self.post(url, None)

    def key_authorization(self, token: str) -> str:
        return f"{token}.{thumbprint(self.key)}"


@pytest.fixture
def acme_client(client: TestClient) -> Iterator[Any]:
    """`acme_client(key=...)`: an Acme over the in-process application."""

    def make(**kwargs: Any) -> Acme:
        return Acme(http=client, base="https://testserver", **kwargs)

    yield make


@pytest.fixture
def make_eab(api: Any) -> Any:
    """`make_eab(dns_suffixes=[...], ip_ranges=[...])`: a new EAB credential from the API."""
    admin = api.admin()

    def make(
        dns_suffixes: list[str] | None = None, ip_ranges: list[str] | None = None
    ) -> dict[str, str]:
        response = api.post(
            "/api/v1/acme/eab",
            headers=admin,
            json={
                "label": "test",
                "dns_suffixes": dns_suffixes if dns_suffixes is not None else ["lab.test"],
                "ip_ranges": ip_ranges or [],
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return {"kid": body["external_key"]["kid"], "hmac_key": body["hmac_key"]}

    return make


# -- the client's side of validation: an http-01 and a tls-alpn-01 responder on loopback --------


class Http01:
    """A tiny HTTP server answering /.well-known/acme-challenge/TOKEN; records every request."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.answers: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                responder.requests.append((self.headers.get("Host", ""), self.path))
                token = self.path.rsplit("/", 1)[-1]
                if token in responder.redirects:
                    self.send_response(302)
                    self.send_header("Location", responder.redirects[token])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = responder.answers.get(token)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TlsAlpn01:
    """A TLS server offering `acme-tls/1` with the RFC 8737 certificate for one identifier."""

    def __init__(self) -> None:
        import socket
        import threading

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.context: Any = None
        self.handshakes = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def answer(
        self, name: str, key_authorization: str, *, kind: str = "dns", critical: bool = True
    ) -> None:
        import datetime as dt
        import ipaddress
        import ssl
        import tempfile

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        digest = hashlib.sha256(key_authorization.encode()).digest()
        san: x509.GeneralName = (
            x509.IPAddress(ipaddress.ip_address(name)) if kind == "ip" else x509.DNSName(name)
        )
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"), b"\x04\x20" + digest
                ),
                critical=critical,
            )
            .sign(key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["acme-tls/1"])
        with tempfile.TemporaryDirectory() as tmp:
            cert_path, key_path = f"{tmp}/c.pem", f"{tmp}/k.pem"
            with open(cert_path, "wb") as out:
                out.write(certificate.public_bytes(serialization.Encoding.PEM))
            with open(key_path, "wb") as out:
                out.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
            context.load_cert_chain(cert_path, key_path)
        self.context = context

    def _serve(self) -> None:
        import contextlib

        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), connection:
                connection.settimeout(5)
                if self.context is not None:
                    with self.context.wrap_socket(connection, server_side=True):
                        self.handshakes += 1

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def http01() -> Iterator[Http01]:
    server = Http01()
    yield server
    server.close()


@pytest.fixture
def tls_alpn01() -> Iterator[TlsAlpn01]:
    server = TlsAlpn01()
    yield server
    server.close()


@pytest.fixture
def acme_settings(settings: Any, http01: Http01, tls_alpn01: TlsAlpn01) -> Any:
    """The test server's settings, validating on the responders' loopback ports; every name
    under lab.test is at 127.0.0.1 (a static host table: no DNS is asked)."""
    hosts = {name: ("127.0.0.1",) for name in ("a.lab.test", "b.lab.test", "other.test")}
    return settings.model_copy(
        update={
            "acme_http_port": http01.port,
            "acme_tls_alpn_port": tls_alpn01.port,
            "acme_static_hosts": hosts,
            "acme_validation_timeout_seconds": 3.0,
        }
    )


@pytest.fixture
def acme_app(acme_settings: Any, clock: Any) -> Iterator[TestClient]:
    from labgate.control.http.app import create_app

    with TestClient(
        create_app(acme_settings, clock=clock), base_url="https://testserver"
    ) as client:
        yield client


@pytest.fixture
def acme_peer(acme_app: TestClient) -> Any:
    """`acme_peer(key=...)`: an Acme whose server validates at the loopback responders."""

    def make(**kwargs: Any) -> Acme:
        return Acme(http=acme_app, base="https://testserver", **kwargs)

    return make


def make_csr(*names: str, key: Any = None, common_name: str | None = None) -> tuple[Any, bytes]:
    """A key and the DER CSR for `names` (DNS, or IP when it parses as one)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = key or ec.generate_private_key(ec.SECP256R1())
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0])])
    )
    csr = builder.add_extension(x509.SubjectAlternativeName(general), critical=False).sign(
        key, hashes.SHA256()
    )
    return key, csr.public_bytes(Encoding.DER)


def authorize_http01(acme: Acme, http01: Http01, order: dict[str, Any]) -> None:
    """Answer every authorization of `order` over http-01, as a client would."""
    for authz_url in order["authorizations"]:
        authz = acme.get(authz_url).json()
        (challenge,) = [c for c in authz["challenges"] if c["type"] == "http-01"]
        http01.answers[challenge["token"]] = acme.key_authorization(challenge["token"]).encode()
        answered = acme.post(challenge["url"], {})
        assert answered.status_code == 200, answered.text


def obtain(acme: Acme, http01: Http01, *names: str) -> tuple[str, Any, bytes]:
    """A certificate for `names` the whole way through: the order URL, the key, the chain PEM."""
    created = acme.order(*names)
    assert created.status_code == 201, created.text
    order_url = created.headers["Location"]
    authorize_http01(acme, http01, created.json())
    ready = acme.get(order_url).json()
    assert ready["status"] == "ready", ready
    key, csr = make_csr(*names)
    final = acme.post(ready["finalize"], {"csr": b64(csr)})
    assert final.status_code == 200, final.text
    assert final.json()["status"] == "valid"
    chain = acme.get(final.json()["certificate"])
    assert chain.status_code == 200, chain.text
    assert chain.headers["content-type"] == "application/pem-certificate-chain"
    return order_url, key, chain.content
