"""Key pairs: the four supported types, generation, encryption at rest and careful loading."""

from __future__ import annotations

from enum import StrEnum

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from labgate.pki.decisions import Allowed, Decision, Denied
from labgate.pki.errors import CorruptKey, PassphraseRequired, WeakPassphrase, WrongPassphrase

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# Below these sizes a key is no longer a safe choice for a certificate valid for months.
MIN_RSA_BITS = 2048
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
# A new passphrase: the control server's rule for its key passphrase, the same here. The values
# people paste from examples (and the README's own "...") are refused outright.
MIN_PASSPHRASE_LENGTH = 16
PLACEHOLDER_PASSPHRASES = frozenset(
    {"changethis", "changeme", "change-me", "secret", "password", "passphrase", "example", "xxx"}
)


class KeyType(StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_3072 = "rsa-3072"
    ED25519 = "ed25519"


def generate(key_type: KeyType) -> PrivateKey:
    """A new private key of `key_type`."""
    match key_type:
        case KeyType.ECDSA_P256:
            return ec.generate_private_key(ec.SECP256R1())
        case KeyType.ECDSA_P384:
            return ec.generate_private_key(ec.SECP384R1())
        case KeyType.RSA_3072:
            return rsa.generate_private_key(public_exponent=65537, key_size=3072)
        case KeyType.ED25519:
            return ed25519.Ed25519PrivateKey.generate()


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The hash to sign with `key`: matched to the curve's strength; Ed25519 takes none."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return hashes.SHA384()
    return hashes.SHA256()


def key_type_of(public: PublicKey) -> KeyType:
    """The KeyType of an existing key (a renewal with a new key keeps the type)."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        return KeyType.ECDSA_P384 if isinstance(public.curve, ec.SECP384R1) else KeyType.ECDSA_P256
    if isinstance(public, rsa.RSAPublicKey):
        return KeyType.RSA_3072
    return KeyType.ED25519


def private_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM, encrypted with the best encryption available when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    else:
        encryption = serialization.BestAvailableEncryption(passphrase)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def check_new_passphrase(passphrase: bytes) -> None:
    """Refuse a passphrase for new keys that is a placeholder or too short (never echoing it)."""
    text = passphrase.decode("utf-8", errors="replace").strip().lower()
    if text in PLACEHOLDER_PASSPHRASES or set(text) <= {".", "x", "*", "<", ">", "-", "_"}:
        raise WeakPassphrase(
            "the CA passphrase is a placeholder; choose a real one (for example "
            "`head -c 32 /dev/urandom | base64`)"
        )
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise WeakPassphrase(
            f"the CA passphrase has {len(passphrase)} characters; at least "
            f"{MIN_PASSPHRASE_LENGTH} are needed"
        )


def public_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private(pem: bytes, passphrase: bytes | None, *, source: str) -> PrivateKey:
    """Load a private key, telling a wrong passphrase from a damaged file.

    OpenSSL reports a failed decryption as "bad decrypt"; any other failure means the file itself
    is not a key. PKCS#8 encryption carries no MAC, so a file damaged in its last block can also
    look like a wrong passphrase: the message says so rather than guess.
    """
    encrypted = b"ENCRYPTED PRIVATE KEY" in pem or b"Proc-Type: 4,ENCRYPTED" in pem
    if encrypted and passphrase is None:
        raise PassphraseRequired(
            f"{source} is encrypted; give its passphrase "
            "(LABGATE_CA_PASSPHRASE or --passphrase-file)"
        )
    try:
        key = serialization.load_pem_private_key(pem, passphrase if encrypted else None)
    except ValueError as exc:
        if encrypted and "decrypt" in str(exc).lower():
            raise WrongPassphrase(
                f"the passphrase does not decrypt {source} (wrong passphrase, or a damaged file)"
            ) from None
        raise CorruptKey(f"{source} is not a readable private key") from None
    except (TypeError, UnsupportedAlgorithm):
        raise CorruptKey(f"{source} is not a readable private key") from None
    if not isinstance(key, PrivateKey):
        raise CorruptKey(f"{source} holds a {type(key).__name__}, not an ECDSA, RSA or Ed25519 key")
    return key


def judge_public_key(key: object) -> Decision:
    """Whether a requester's public key is one this CA will certify."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return Allowed()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ALLOWED_CURVES):
            return Allowed()
        return Denied(reason=f"elliptic curve {key.curve.name} is not allowed (P-256 or P-384)")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= MIN_RSA_BITS:
            return Allowed()
        return Denied(reason=f"RSA key of {key.key_size} bits is too short (at least 2048)")
    return Denied(reason=f"key type {type(key).__name__} is not allowed (ECDSA, RSA or Ed25519)")
