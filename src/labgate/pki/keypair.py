"""A holder's own key and its certificate signing request: the key never leaves its holder.

A device (at its link and every renewal) and a person (`labgate cert get`) make a new P-256 key
each time; only the CSR (public key and the common name the server asks for, nothing else) is
sent, and the certificate comes back to be kept with the key in one file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from labgate.pki import keys


def new_key() -> keys.PrivateKey:
    return keys.generate(keys.KeyType.ECDSA_P256)


def build_csr(
    key: keys.PrivateKey,
    common_name: str,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    uris: Sequence[str] = (),
) -> str:
    """A PEM CSR whose subject is exactly `CN=common_name`; a SAN extension only when names are
    given (a gateway renewing keeps its own)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, keys.signature_hash(key))
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def combined_pem(key: keys.PrivateKey, certificate_pem: str, chain_pem: str) -> bytes:
    """One file for TLS: leaf, chain, then the key (`load_cert_chain(path)` reads all three)."""
    leaf = certificate_pem.strip()
    chain = chain_pem.strip()
    # The server's chain starts with the leaf; send it once.
    parts = [chain if chain.startswith(leaf) else f"{leaf}\n{chain}".strip()]
    parts.append(keys.private_pem(key, None).decode().strip())
    return ("\n".join(p for p in parts if p) + "\n").encode("ascii")


def validity(certificate_pem: str) -> tuple[x509.Certificate, str]:
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
    return certificate, format(certificate.serial_number, "x")
