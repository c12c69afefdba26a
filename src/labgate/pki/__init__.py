"""labgate's own certificate authority: keys, profiles, issuing, CSR signing, renewal, revocation,
CRLs and an inventory of everything issued. A pure library: the control server and `labgate ca`
call it."""

from labgate.pki.authority import CertificateAuthority
from labgate.pki.errors import (
    AlreadyRevoked,
    CaExists,
    CaExpired,
    CaNotFound,
    CorruptCertificate,
    CorruptKey,
    InsecureKeyFile,
    InvalidName,
    InvalidRequest,
    InventoryError,
    PassphraseRequired,
    PkiError,
    ProfileViolation,
    SerialTaken,
    UnknownCertificate,
    WeakPassphrase,
    WrongPassphrase,
)
from labgate.pki.inventory import Entry, Inventory, SqliteInventory
from labgate.pki.issued import Issued
from labgate.pki.keys import KeyType
from labgate.pki.profiles import Profile

__all__ = [
    "AlreadyRevoked",
    "CaExists",
    "CaExpired",
    "CaNotFound",
    "CertificateAuthority",
    "CorruptCertificate",
    "CorruptKey",
    "Entry",
    "InsecureKeyFile",
    "InvalidName",
    "InvalidRequest",
    "Inventory",
    "InventoryError",
    "Issued",
    "KeyType",
    "PassphraseRequired",
    "PkiError",
    "Profile",
    "ProfileViolation",
    "SerialTaken",
    "SqliteInventory",
    "UnknownCertificate",
    "WeakPassphrase",
    "WrongPassphrase",
]
