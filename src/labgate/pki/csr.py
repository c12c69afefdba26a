"""Reading a certificate signing request against a profile: the key never leaves its owner.

The CSR's own signature is checked, then everything it asks for. What the profile would not give
(CA=true, a key usage for signing certificates, an extended key usage beyond the profile, a SAN the
profile forbids, an extension labgate does not understand marked critical) is refused, naming it.
Only the subject's common name is taken; the certificate's other contents come from the profile.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from labgate.pki import profiles
from labgate.pki.decisions import Denied
from labgate.pki.errors import InvalidRequest, ProfileViolation
from labgate.pki.keys import PublicKey, judge_public_key
from labgate.pki.profiles import LeafRequest, Profile


def read_csr(csr_pem: bytes, profile: Profile) -> tuple[LeafRequest, PublicKey]:
    """The request the CSR makes under `profile`, and the key to certify; raises if refused."""
    csr = _parse(csr_pem)
    if not csr.is_signature_valid:
        raise InvalidRequest("the CSR's signature does not verify with its own public key")
    public = csr.public_key()
    decision = judge_public_key(public)
    if isinstance(decision, Denied):
        raise ProfileViolation(f"CSR refused: {decision.reason}")
    assert isinstance(
        public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    )
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise InvalidRequest(f"the CSR's extensions do not parse: {exc}") from None
    dns: list[str] = []
    ips: list[str] = []
    uris: list[str] = []
    for extension in extensions:
        _check_extension(extension, profile, dns, ips, uris)
    name = _common_name(csr) or (dns[0] if profile is Profile.SERVER and dns else None)
    if name is None:
        raise InvalidRequest("the CSR has no subject common name (CN) to name the holder")
    request = profiles.build_request(profile, name, dns=dns, ips=ips, uris=uris)
    decision = profiles.judge(request)
    if isinstance(decision, Denied):
        raise ProfileViolation(f"CSR refused: {decision.reason}")
    return request, public


def _parse(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        if csr_pem.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_csr(csr_pem)
        return x509.load_der_x509_csr(csr_pem)
    except ValueError:
        raise InvalidRequest("not a certificate signing request (PEM or DER PKCS#10)") from None


def _check_extension(
    extension: x509.Extension[x509.ExtensionType],
    profile: Profile,
    dns: list[str],
    ips: list[str],
    uris: list[str],
) -> None:
    value = extension.value
    if isinstance(value, x509.SubjectAlternativeName):
        for general in value:
            if isinstance(general, x509.DNSName):
                dns.append(general.value)
            elif isinstance(general, x509.IPAddress):
                ips.append(str(general.value))
            elif isinstance(general, x509.UniformResourceIdentifier):
                uris.append(general.value)
            else:
                raise ProfileViolation(
                    f"CSR refused: SAN of type {type(general).__name__} is not allowed "
                    "(only DNS, IP and URI)"
                )
    elif isinstance(value, x509.BasicConstraints):
        if value.ca:
            raise ProfileViolation(f"CSR refused: it asks for CA=true; a {profile} is not a CA")
    elif isinstance(value, x509.KeyUsage):
        if value.key_cert_sign or value.crl_sign:
            raise ProfileViolation(
                f"CSR refused: key usage keyCertSign/cRLSign is for CAs, not a {profile}"
            )
    elif isinstance(value, x509.ExtendedKeyUsage):
        extra = [oid for oid in value if oid not in profile.extended_key_usages]
        if extra:
            names = ", ".join(_oid_name(oid) for oid in extra)
            raise ProfileViolation(
                f"CSR refused: extended key usage {names} is not part of the {profile} profile"
            )
    elif extension.critical:
        # Critical means "reject me if you do not understand me": labgate copies none of these.
        raise ProfileViolation(
            f"CSR refused: unknown critical extension {_oid_name(extension.oid)}"
        )


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = getattr(oid, "_name", "Unknown OID")
    return oid.dotted_string if name == "Unknown OID" else f"{name} ({oid.dotted_string})"


def _common_name(csr: x509.CertificateSigningRequest) -> str | None:
    values = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) > 1:
        raise InvalidRequest("the CSR's subject has more than one common name (CN)")
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
