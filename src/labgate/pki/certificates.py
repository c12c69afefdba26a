"""The CA's certificates: building the root, the issuing CA and leaves; reading them back.

Every `critical` flag is chosen here, on purpose: basic constraints and key usage are critical
(a relying party that cannot read them must not accept the certificate); extended key usage,
SANs (the subject is never empty) and the key identifiers are not.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from labgate.pki.errors import CorruptCertificate, InvalidRequest
from labgate.pki.keys import PrivateKey, PublicKey, signature_hash
from labgate.pki.profiles import LeafRequest

ROOT_SUFFIX = "Root"
ISSUING_SUFFIX = "Issuing"


def ca_subject(ca_name: str, suffix: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca_name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{ca_name} {suffix}"[:64]),
        ]
    )


def build_root(
    key: PrivateKey, ca_name: str, *, serial: int, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    subject = ca_subject(ca_name, ROOT_SUFFIX)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # path_length=1: the root signs issuing CAs, which sign only leaves.
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(key, signature_hash(key))


def build_issuing(
    public: PublicKey,
    ca_name: str,
    *,
    root: x509.Certificate,
    root_key: PrivateKey,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    suffix: str = ISSUING_SUFFIX,
) -> x509.Certificate:
    """An issuing CA; a later one (a rotation) gets its own `suffix` ("Issuing 2"), so that its
    name tells it apart from the one it replaces in chains, CRLs and logs."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca_subject(ca_name, suffix))
        .issuer_name(root.subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # path_length=0: the issuing CA may sign leaves, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_authority_key_id(root), critical=False)
    )
    return builder.sign(root_key, signature_hash(root_key))


def build_leaf(
    request: LeafRequest,
    public: PublicKey,
    *,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in request.dns]
    sans += [x509.IPAddress(a) for a in request.ips]
    sans += [x509.UniformResourceIdentifier(u) for u in request.all_uris]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request.name)]))
        .issuer_name(issuer.subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(public), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(list(request.profile.extended_key_usages)), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_authority_key_id(issuer), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, signature_hash(issuer_key))


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage(public: PublicKey) -> x509.KeyUsage:
    # keyEncipherment matters only for RSA keys (TLS 1.2 RSA key transport); ECDSA and Ed25519
    # keys only ever sign.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


# -- reading certificates back -------------------------------------------------------------


def public_key_of(cert: x509.Certificate) -> PublicKey:
    public = cert.public_key()
    if not isinstance(public, PublicKey):
        raise InvalidRequest(
            f"certificate {common_name(cert)!r} has an unsupported {type(public).__name__}"
        )
    return public


def read_certificate(path: Path) -> x509.Certificate:
    return load_certificate(path.read_bytes(), source=str(path))


def load_certificate(pem: bytes, *, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CorruptCertificate(f"{source} is not a PEM certificate") from None


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(values[0].value) if values else cert.subject.rfc4514_string()
