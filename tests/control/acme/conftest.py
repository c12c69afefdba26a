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
