"""CSR signing: the key never leaves its owner, and what a profile forbids is refused by name."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from labgate.pki import CertificateAuthority, InvalidRequest, Profile, ProfileViolation
from labgate.pki.identity import identity_of

Key = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def make_csr(
    cn: str | None = "alice",
    *extensions: tuple[x509.ExtensionType, bool],
    key: Key | None = None,
) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def san(*names: x509.GeneralName) -> tuple[x509.ExtensionType, bool]:
    return x509.SubjectAlternativeName(list(names)), False


def test_a_clean_client_csr_is_signed_with_the_profile_contents(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.sign_csr(make_csr("alice", key=key), Profile.CLIENT)
    assert issued.key_pem is None
    assert issued.certificate.public_key() == key.public_key()
    assert identity_of(issued.certificate) == "labgate:user:alice"
    eku = issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ca.inventory.get(issued.serial) is not None


def test_a_csr_made_by_openssl_is_signed_for_a_device(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    subprocess.run(
        [
            "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", tmp_path / "d.key", "-subj", "/CN=qs5-0042",
            "-addext", "subjectAltName=DNS:qs5-0042.lab.example", "-out", tmp_path / "d.csr",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    issued = ca.sign_csr((tmp_path / "d.csr").read_bytes(), Profile.DEVICE)
    assert issued.identity == "labgate:device:qs5-0042"
    names = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["qs5-0042.lab.example"]


def test_a_csr_whose_signature_does_not_verify_is_refused(ca: CertificateAuthority) -> None:
    pem = make_csr("alice", key=ed25519.Ed25519PrivateKey.generate())
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of an Ed25519 signature
    with pytest.raises(InvalidRequest, match="signature does not verify"):
        ca.sign_csr(bytes(der), Profile.CLIENT)
    assert len(ca.inventory.entries()) == 2  # the CA's own two


def test_a_server_san_on_a_client_csr_is_refused(ca: CertificateAuthority) -> None:
    csr = make_csr("alice", san(x509.DNSName("bank.example")))
    with pytest.raises(ProfileViolation, match=r"client certificate may not carry a server SAN"):
        ca.sign_csr(csr, Profile.CLIENT)


def test_an_ip_san_on_a_client_csr_is_refused(ca: CertificateAuthority) -> None:

    csr = make_csr("alice", san(x509.IPAddress(ipaddress.ip_address("10.0.0.1"))))
    with pytest.raises(ProfileViolation, match=r"10\.0\.0\.1"):
        ca.sign_csr(csr, Profile.CLIENT)


def test_a_csr_asking_to_be_a_ca_is_refused(ca: CertificateAuthority) -> None:
    csr = make_csr("alice", (x509.BasicConstraints(ca=True, path_length=None), True))
    with pytest.raises(ProfileViolation, match="CA=true"):
        ca.sign_csr(csr, Profile.CLIENT)


def test_a_csr_asking_for_certificate_signing_key_usage_is_refused(
    ca: CertificateAuthority,
) -> None:
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    with pytest.raises(ProfileViolation, match="keyCertSign"):
        ca.sign_csr(make_csr("alice", (usage, True)), Profile.CLIENT)


def test_a_csr_with_an_unknown_critical_extension_is_refused(ca: CertificateAuthority) -> None:
    strange = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.7"), b"\x05\x00")
    with pytest.raises(
        ProfileViolation, match=r"unknown critical extension 1\.3\.6\.1\.4\.1\.55555\.7"
    ):
        ca.sign_csr(make_csr("alice", (strange, True)), Profile.CLIENT)


def test_an_unknown_non_critical_extension_is_ignored_not_copied(ca: CertificateAuthority) -> None:
    oid = ObjectIdentifier("1.3.6.1.4.1.55555.8")
    strange = x509.UnrecognizedExtension(oid, b"\x05\x00")
    issued = ca.sign_csr(make_csr("alice", (strange, False)), Profile.CLIENT)
    with pytest.raises(x509.ExtensionNotFound):
        issued.certificate.extensions.get_extension_for_oid(oid)


def test_a_csr_asking_for_code_signing_is_refused(ca: CertificateAuthority) -> None:
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
    with pytest.raises(ProfileViolation, match="codeSigning"):
        ca.sign_csr(make_csr("alice", (eku, False)), Profile.CLIENT)


def test_a_csr_asking_for_server_auth_on_a_client_profile_is_refused(
    ca: CertificateAuthority,
) -> None:
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    with pytest.raises(ProfileViolation, match="serverAuth"):
        ca.sign_csr(make_csr("alice", (eku, False)), Profile.CLIENT)


def test_a_csr_claiming_another_identity_is_refused(ca: CertificateAuthority) -> None:
    csr = make_csr("alice", san(x509.UniformResourceIdentifier("labgate:gateway:site-a")))
    with pytest.raises(ProfileViolation, match="labgate:gateway:site-a"):
        ca.sign_csr(csr, Profile.CLIENT)
    csr = make_csr("alice", san(x509.UniformResourceIdentifier("labgate:user:root")))
    with pytest.raises(ProfileViolation, match="labgate:user:root"):
        ca.sign_csr(csr, Profile.CLIENT)


def test_a_csr_with_an_email_san_is_refused(ca: CertificateAuthority) -> None:
    csr = make_csr("alice", san(x509.RFC822Name("alice@lab.example")))
    with pytest.raises(ProfileViolation, match="RFC822Name"):
        ca.sign_csr(csr, Profile.CLIENT)


def test_a_csr_with_a_weak_rsa_key_is_refused(ca: CertificateAuthority) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ProfileViolation, match="1024 bits"):
        ca.sign_csr(make_csr("alice", key=weak), Profile.CLIENT)


def test_a_csr_on_a_weak_curve_is_refused(ca: CertificateAuthority) -> None:
    weak = ec.generate_private_key(ec.SECP224R1())
    with pytest.raises(ProfileViolation, match="secp224r1"):
        ca.sign_csr(make_csr("alice", key=weak), Profile.CLIENT)


def test_a_csr_without_a_common_name_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidRequest, match="no subject common name"):
        ca.sign_csr(make_csr(None), Profile.CLIENT)


def test_a_server_csr_may_name_itself_by_its_first_dns_san(ca: CertificateAuthority) -> None:
    issued = ca.sign_csr(make_csr(None, san(x509.DNSName("web.lab.example"))), Profile.SERVER)
    cn = issued.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "web.lab.example"


def test_garbage_is_not_a_csr(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidRequest, match="not a certificate signing request"):
        ca.sign_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n", Profile.CLIENT)
