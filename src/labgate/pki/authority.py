"""The certificate authority: a root, an issuing CA, and what they sign, kept in an inventory.

Layout of a CA directory::

    root.crt          the trust anchor handed to relying parties
    root.key          its key (encrypted; used only to sign issuing CAs)
    issuing.crt       the intermediate that signs new leaves and CRLs
    issuing.key       its key (encrypted)
    issuing-HEX.crt   every issuing CA there has been, by serial, the current one included
    issuing-HEX.key   (written by `rotate_issuing`; a retired one only signs CRLs)
    inventory.sqlite3 every certificate, revocation and CRL number
    leases/           one lock file per process that may have issuances in flight

Order of work when issuing: validate everything, sign in memory, record in the inventory as
`pending` (under this process's lease), hand the certificate out (write its files, send it), and
only then record it `issued` (`handed_out`). A crash before the record leaves a certificate nobody
ever saw; between the record and `handed_out`, the inventory knows the serial is in flight, and
the next process to open the CA (or list it) finds its lease dead and revokes it as `orphaned`,
removing the temporary files it left (see `pending`). A serial the inventory already holds
(another process drew it) is refused by the database, and the certificate is signed again.

A CA object closed normally takes what it still holds pending as handed out (its caller had the
certificates in hand and finished); one left by an exception (`with` ... raise) takes them as
`failed`.

Rotation (`rotate_issuing`): the root signs a new issuing CA, which signs every leaf from then on;
the retired one keeps signing CRLs for what it issued until the last of those expires (leaves
never outlive their issuer, so at the latest until it expires itself). Relying parties trust the
root, so they see no change; a peer's chain names its own intermediate. Each certificate's
inventory entry records the serial of the CA that signed it, so a revocation lands in the right
CRL. The new files are written under their serial first, then issuing.key and issuing.crt are
replaced; `open` takes the key of issuing.crt from issuing-HEX.key when present, so a crash
between those two replacements leaves a CA that still opens, with the old issuing CA current.
"""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from labgate.pki import certificates, csr, keys, names, profiles
from labgate.pki.atomic import PRIVATE, PUBLIC, write_atomic
from labgate.pki.decisions import Denied
from labgate.pki.errors import (
    AlreadyRevoked,
    CaExists,
    CaExpired,
    CaNotFound,
    CorruptCertificate,
    CorruptKey,
    InsecureKeyFile,
    InvalidRequest,
    PassphraseRequired,
    ProfileViolation,
    SerialTaken,
    UnknownCertificate,
)
from labgate.pki.identity import identity_of
from labgate.pki.inventory import (
    FAILED,
    ISSUED,
    PENDING,
    Entry,
    Inventory,
    Revocation,
    SqliteInventory,
)
from labgate.pki.issued import Issued
from labgate.pki.keys import KeyType, PrivateKey, PublicKey
from labgate.pki.pending import Lease, sweep
from labgate.pki.profiles import LeafRequest, Profile
from labgate.pki.revocation import DEFAULT_NEXT_UPDATE, build_crl, reason_flag

ROOT_CRT, ROOT_KEY = "root.crt", "root.key"
ISSUING_CRT, ISSUING_KEY = "issuing.crt", "issuing.key"
INVENTORY = "inventory.sqlite3"
CA_FILES = (ROOT_CRT, ROOT_KEY, ISSUING_CRT, ISSUING_KEY, INVENTORY)
ISSUING_BY_SERIAL = "issuing-{serial:x}"  # + .crt / .key

ROOT_LIFETIME = timedelta(days=3653)  # 10 years
ISSUING_LIFETIME = timedelta(days=731)  # 2 years
# Certificates start a little in the past so a peer whose clock lags accepts them at once.
BACKDATE = timedelta(minutes=5)
# The shortest lifetime asked as a duration (a test's, or a server set to renew every minute).
MIN_LIFETIME = timedelta(seconds=10)
# A fresh 159-bit serial colliding even once is astronomically unlikely; eight in a row means the
# serial source is broken, and looping on would hide that.
SERIAL_ATTEMPTS = 8
# The inventory's notion of "a CA certificate", beside the leaf profiles.
ROOT_PROFILE, ISSUING_PROFILE = "root-ca", "issuing-ca"

Clock = Callable[[], datetime]
SerialSource = Callable[[], int]


def _now() -> datetime:
    return datetime.now(UTC)


class CertificateAuthority:
    """A CA on disk: make one with `init`, use an existing one with `open`."""

    def __init__(
        self,
        *,
        directory: Path,
        root: x509.Certificate,
        issuing: x509.Certificate,
        issuing_key: PrivateKey,
        inventory: Inventory,
        clock: Clock = _now,
        serials: SerialSource = x509.random_serial_number,
        retired: Sequence[tuple[x509.Certificate, PrivateKey]] = (),
    ) -> None:
        self.directory = directory
        self.root = root
        self.issuing = issuing
        self._issuing_key = issuing_key
        # Issuing CAs rotated out and still valid: they sign CRLs, never certificates.
        self._retired = list(retired)
        self.inventory = inventory
        self._clock = clock
        self._serials = serials
        # Taken at the first signature, so reading commands leave no lease behind.
        self._lease: Lease | None = None
        self._pending: set[int] = set()
        self._pending_lock = threading.Lock()

    # -- making and opening ---------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        name: str = "Lab CA",
        key_type: KeyType = KeyType.ECDSA_P256,
        passphrase: bytes | None,
        unencrypted: bool = False,
        clock: Clock = _now,
        serials: SerialSource = x509.random_serial_number,
    ) -> Self:
        """Make a two-tier CA in `directory`; refuses if any CA file is already there."""
        directory = Path(directory)
        name = names.display_name(name)
        stored_passphrase = _passphrase_for_storage(passphrase, unencrypted=unencrypted)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for filename in CA_FILES:
            if (directory / filename).exists():
                raise CaExists(
                    f"a CA already exists in {directory} (found {filename}); refusing to overwrite"
                )
        now = clock()
        root_key, issuing_key = keys.generate(key_type), keys.generate(key_type)
        root = certificates.build_root(
            root_key,
            name,
            serial=serials(),
            not_before=now - BACKDATE,
            not_after=now + ROOT_LIFETIME,
        )
        issuing = certificates.build_issuing(
            issuing_key.public_key(),
            name,
            root=root,
            root_key=root_key,
            serial=serials(),
            not_before=now - BACKDATE,
            not_after=now + ISSUING_LIFETIME,
        )
        # The inventory comes first: no CA certificate exists on disk that it does not know.
        inventory = SqliteInventory.create(directory / INVENTORY)
        for cert, profile in ((root, ROOT_PROFILE), (issuing, ISSUING_PROFILE)):
            inventory.add(
                _entry_for(
                    cert, profile=profile, name=name, issued_at=now, issuer=root.serial_number
                )
            )
        write_atomic(
            directory / ROOT_KEY, keys.private_pem(root_key, stored_passphrase), mode=PRIVATE
        )
        write_atomic(
            directory / ISSUING_KEY, keys.private_pem(issuing_key, stored_passphrase), mode=PRIVATE
        )
        write_atomic(directory / ISSUING_CRT, certificates.pem(issuing), mode=PUBLIC)
        write_atomic(directory / ROOT_CRT, certificates.pem(root), mode=PUBLIC)
        return cls(
            directory=directory,
            root=root,
            issuing=issuing,
            issuing_key=issuing_key,
            inventory=inventory,
            clock=clock,
            serials=serials,
        )

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        passphrase: bytes | None,
        inventory: Inventory | None = None,
        clock: Clock = _now,
        serials: SerialSource = x509.random_serial_number,
    ) -> Self:
        """Open the CA in `directory`. Only the issuing key is loaded: the root key stays cold."""
        directory = Path(directory)
        missing = [f for f in (ROOT_CRT, ISSUING_CRT, ISSUING_KEY) if not (directory / f).is_file()]
        if missing:
            raise CaNotFound(f"no complete CA in {directory} (missing {', '.join(missing)})")
        root = certificates.read_certificate(directory / ROOT_CRT)
        issuing = certificates.read_certificate(directory / ISSUING_CRT)
        by_serial = directory / (ISSUING_BY_SERIAL.format(serial=issuing.serial_number) + ".key")
        issuing_key = _load_issuing_key(
            by_serial if by_serial.is_file() else directory / ISSUING_KEY,
            issuing,
            root,
            passphrase,
            label=ISSUING_CRT,
        )
        now = clock()
        retired = []
        for path in sorted(directory.glob("issuing-*.crt")):
            cert = certificates.read_certificate(path)
            if cert.serial_number == issuing.serial_number or now >= cert.not_valid_after_utc:
                continue  # the current one, or one that may sign nothing any more
            key_path = path.with_suffix(".key")
            if not key_path.is_file():
                raise CaNotFound(f"{path.name} has no key beside it (missing {key_path.name})")
            retired.append(
                (cert, _load_issuing_key(key_path, cert, root, passphrase, label=path.name))
            )
        if inventory is None:
            inventory = SqliteInventory.open(directory / INVENTORY)
        authority = cls(
            directory=directory,
            root=root,
            issuing=issuing,
            issuing_key=issuing_key,
            inventory=inventory,
            clock=clock,
            serials=serials,
            retired=retired,
        )
        authority.sweep()
        return authority

    def sweep(self) -> list[Entry]:
        """Revoke as orphaned what dead processes left pending, and remove their temporary files."""
        return sweep(self.directory, self.inventory, now=self._clock)

    def close(self, *, failed: bool = False) -> None:
        """Settle what this object still holds pending (`issued`, or `failed` if `failed`), give up
        its lease and close the inventory."""
        with self._pending_lock:
            serials, self._pending = sorted(self._pending), set()
        for serial in serials:
            self.inventory.settle(serial, state=FAILED if failed else ISSUED, when=self._clock())
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        self.inventory.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.close(failed=kind is not None)

    # -- the second phase ------------------------------------------------------------------------

    def handed_out(self, issued: Issued) -> Entry:
        """The certificate reached its holder (its files are in place, or it was sent): `issued`."""
        return self._settle(issued, ISSUED)

    def not_handed_out(self, issued: Issued) -> Entry:
        """Handing it out failed: `failed`, and revoked, since a copy may exist somewhere."""
        return self._settle(issued, FAILED)

    @contextmanager
    def handing_out(self, issued: Issued) -> Iterator[None]:
        """`handed_out` when the block completes, `not_handed_out` when it raises."""
        try:
            yield
        except BaseException:
            self.not_handed_out(issued)
            raise
        self.handed_out(issued)

    def _settle(self, issued: Issued, state: str) -> Entry:
        with self._pending_lock:
            self._pending.discard(issued.serial)
        return self.inventory.settle(issued.serial, state=state, when=self._clock())

    @property
    def root_pem(self) -> bytes:
        return certificates.pem(self.root)

    @property
    def issuing_pem(self) -> bytes:
        return certificates.pem(self.issuing)

    @property
    def retired(self) -> list[x509.Certificate]:
        """Issuing CAs rotated out that are still valid (they sign CRLs only), oldest first."""
        return [cert for cert, _ in self._retired]

    # -- rotation ----------------------------------------------------------------------------------

    def rotate_issuing(
        self, *, passphrase: bytes | None, key_type: KeyType | None = None
    ) -> x509.Certificate:
        """A new issuing CA under the same root (whose key `passphrase` opens), current from now
        on; the old one is kept to sign CRLs for what it issued. `key_type`: the old one's if
        not given. New keys are stored under `passphrase` (none if the CA's keys are not
        encrypted)."""
        self._check_can_sign()
        _check_private(self.directory / ROOT_KEY)
        root_key = keys.load_private(
            (self.directory / ROOT_KEY).read_bytes(),
            passphrase,
            source=str(self.directory / ROOT_KEY),
        )
        if keys.public_der(root_key.public_key()) != keys.public_der(
            certificates.public_key_of(self.root)
        ):
            raise CorruptKey(f"{self.directory / ROOT_KEY} is not the key of {ROOT_CRT}")
        stored = passphrase if _is_encrypted(self.directory / ROOT_KEY) else None
        now = self._clock()
        if self.root.not_valid_after_utc - now < timedelta(days=1):
            raise CaExpired("the root CA expires within a day; make a new CA instead")
        kind = key_type or keys.key_type_of(certificates.public_key_of(self.issuing))
        new_key = keys.generate(kind)
        ca_name = _ca_name(self.root)
        generation = 1 + sum(1 for e in self.inventory.entries() if e.profile == ISSUING_PROFILE)
        new = certificates.build_issuing(
            new_key.public_key(),
            ca_name,
            root=self.root,
            root_key=root_key,
            serial=self._serials(),
            not_before=now - BACKDATE,
            # No issuing CA outlives the root that vouches for it.
            not_after=min(now + ISSUING_LIFETIME, self.root.not_valid_after_utc),
            suffix=f"{certificates.ISSUING_SUFFIX} {generation}",
        )
        # The inventory comes first, as at `init`: no CA certificate on disk it does not know.
        self.inventory.add(
            _entry_for(
                new,
                profile=ISSUING_PROFILE,
                name=ca_name,
                issued_at=now,
                issuer=self.root.serial_number,
            )
        )
        old_prefix = self.directory / ISSUING_BY_SERIAL.format(serial=self.issuing.serial_number)
        new_prefix = self.directory / ISSUING_BY_SERIAL.format(serial=new.serial_number)
        new_key_pem = keys.private_pem(new_key, stored)
        write_atomic(new_prefix.with_suffix(".key"), new_key_pem, mode=PRIVATE)
        write_atomic(new_prefix.with_suffix(".crt"), certificates.pem(new), mode=PUBLIC)
        if not old_prefix.with_suffix(".key").exists():
            write_atomic(
                old_prefix.with_suffix(".key"),
                (self.directory / ISSUING_KEY).read_bytes(),
                mode=PRIVATE,
            )
        write_atomic(old_prefix.with_suffix(".crt"), self.issuing_pem, mode=PUBLIC)
        write_atomic(self.directory / ISSUING_KEY, new_key_pem, mode=PRIVATE)
        write_atomic(self.directory / ISSUING_CRT, certificates.pem(new), mode=PUBLIC)
        self._retired.append((self.issuing, self._issuing_key))
        self.issuing, self._issuing_key = new, new_key
        return new

    # -- signing -----------------------------------------------------------------------------------

    def issue(
        self,
        profile: Profile,
        name: str,
        *,
        dns: Sequence[str] = (),
        ips: Sequence[str | names.IPAddress] = (),
        uris: Sequence[str] = (),
        days: int | None = None,
        key_type: KeyType = KeyType.ECDSA_P256,
        destination: Path | None = None,
        lifetime: timedelta | None = None,
    ) -> Issued:
        """A new key pair and a certificate for it under `profile`, pending until `handed_out`.
        `destination` is where its files go (PREFIX), so a sweep can clean up after a crash.
        `lifetime` instead of `days` for a lifetime that is no whole number of days."""
        request = profiles.build_request(Profile(profile), name, dns=dns, ips=ips, uris=uris)
        _refuse_if_denied(request)
        lifetime = _lifetime(request.profile, days, lifetime)
        self._check_can_sign()
        key = keys.generate(key_type)
        certificate, lease = self._sign(
            request, key.public_key(), lifetime, destination=destination
        )
        return Issued(
            certificate=certificate,
            issuing=self.issuing,
            profile=request.profile,
            key_pem=keys.private_pem(key, None),
            lease=lease,
        )

    def sign_csr(
        self,
        csr_pem: bytes,
        profile: Profile,
        *,
        days: int | None = None,
        destination: Path | None = None,
        lifetime: timedelta | None = None,
    ) -> Issued:
        """A certificate for the key in a CSR, whose contents must fit `profile`; pending until
        `handed_out`."""
        request, public = csr.read_csr(csr_pem, Profile(profile))
        lifetime = _lifetime(request.profile, days, lifetime)
        self._check_can_sign()
        certificate, lease = self._sign(request, public, lifetime, destination=destination)
        return Issued(
            certificate=certificate,
            issuing=self.issuing,
            profile=request.profile,
            key_pem=None,
            lease=lease,
        )

    def renew(
        self,
        cert_pem: bytes,
        *,
        new_key: bool = False,
        days: int | None = None,
        destination: Path | None = None,
    ) -> Issued:
        """Same subject and SANs, new serial and validity; a new key pair too if `new_key`.
        Pending until `handed_out`."""
        old = certificates.load_certificate(cert_pem, source="the certificate to renew")
        entry = self._own_entry(old)
        if entry.revoked_at is not None:
            status = entry.status(self._clock())
            raise AlreadyRevoked(f"serial {entry.serial:x} is {status}; it cannot be renewed")
        try:
            profile = Profile(entry.profile)
        except ValueError:
            raise InvalidRequest(
                f"serial {entry.serial:x} is a CA certificate, not a leaf"
            ) from None
        request = profiles.request_of(old, profile, entry.name)
        _refuse_if_denied(request)
        lifetime = _lifetime(profile, days)
        self._check_can_sign()
        key = keys.generate(keys.key_type_of(certificates.public_key_of(old))) if new_key else None
        public = key.public_key() if key is not None else certificates.public_key_of(old)
        certificate, lease = self._sign(
            request, public, lifetime, renewed_from=entry.serial, destination=destination
        )
        return Issued(
            certificate=certificate,
            issuing=self.issuing,
            profile=profile,
            key_pem=keys.private_pem(key, None) if key is not None else None,
            lease=lease,
        )

    def revoke(self, serial: int, reason: str = "unspecified") -> Entry:
        reason_flag(reason)
        entry = self.inventory.get(serial)
        if entry is not None and entry.profile in {ROOT_PROFILE, ISSUING_PROFILE}:
            raise InvalidRequest(
                f"serial {serial:x} is this CA's own {entry.profile} certificate; revoking it "
                "means making a new CA"
            )
        return self.inventory.revoke(serial, reason=reason, when=self._clock())

    def crl(
        self,
        *,
        next_update: timedelta = DEFAULT_NEXT_UPDATE,
        encoding: serialization.Encoding = serialization.Encoding.PEM,
        also: Iterable[Revocation] = (),
    ) -> bytes:
        """The current issuing CA's CRL of every revoked, unexpired certificate it signed,
        numbered afresh (see `crls` for every live issuing CA's).

        `also`: revocations recorded elsewhere (the control server's database) that the
        inventory may not know yet; where both know a serial, the inventory's record is listed.
        One whose issuer is not known is listed (serials are random: it cannot hit another's).
        """
        return self.crls(next_update=next_update, encoding=encoding, also=also)[0][1]

    def crls(
        self,
        *,
        next_update: timedelta = DEFAULT_NEXT_UPDATE,
        encoding: serialization.Encoding = serialization.Encoding.PEM,
        also: Iterable[Revocation] = (),
    ) -> list[tuple[x509.Certificate, bytes]]:
        """A CRL from every live issuing CA, the current one first: a retired one stays live
        while anything it signed is unexpired. Each lists what it signed, and what has no
        recorded issuer."""
        if next_update <= timedelta(0):
            raise InvalidRequest(f"next update must be in the future, not {next_update} from now")
        self._check_can_sign()
        now = self._clock()
        listed = {r.serial: r for r in also}
        listed.update((r.serial, r) for r in self.inventory.revocations(unexpired_at=now))
        signers = [(self.issuing, self._issuing_key)]
        if self._retired:
            live = {e.issuer for e in self.inventory.entries(unexpired_at=now)}
            signers += [
                (c, k)
                for c, k in self._retired
                # Its leaves never outlive it: once expired, it has nothing left to list.
                if c.serial_number in live and now < c.not_valid_after_utc
            ]
        out = []
        for issuer, key in signers:
            mine = [r for r in listed.values() if r.issuer in (None, issuer.serial_number)]
            crl = build_crl(
                sorted(mine, key=lambda r: r.serial),
                issuer=issuer,
                issuer_key=key,
                number=self.inventory.next_crl_number(),
                # Backdated like certificates, so a relying party whose clock lags accepts it.
                this_update=now - BACKDATE,
                next_update=now + next_update,
            )
            out.append((issuer, crl.public_bytes(encoding)))
        return out

    def crl_pem_bundle(
        self, *, next_update: timedelta = DEFAULT_NEXT_UPDATE, also: Iterable[Revocation] = ()
    ) -> bytes:
        """Every live issuing CA's CRL in one PEM file (OpenSSL reads every CRL in it)."""
        return b"".join(pem for _, pem in self.crls(next_update=next_update, also=also))

    def entry_of(self, cert_pem: bytes) -> Entry:
        """The inventory's entry for a certificate this CA issued."""
        return self._own_entry(certificates.load_certificate(cert_pem, source="the certificate"))

    # -- internals -------------------------------------------------------------------------------

    def _check_can_sign(self) -> None:
        now = self._clock()
        for label, cert in (("issuing", self.issuing), ("root", self.root)):
            if now >= cert.not_valid_after_utc:
                raise CaExpired(
                    f"the {label} CA {certificates.common_name(cert)!r} expired "
                    f"{_iso(cert.not_valid_after_utc)}; it may no longer sign"
                )
            if now < cert.not_valid_before_utc:
                raise CaExpired(
                    f"the {label} CA {certificates.common_name(cert)!r} is not valid until "
                    f"{_iso(cert.not_valid_before_utc)} (check the clock)"
                )

    def _sign(
        self,
        request: LeafRequest,
        public: PublicKey,
        lifetime: timedelta,
        *,
        renewed_from: int | None = None,
        destination: Path | None = None,
    ) -> tuple[x509.Certificate, str]:
        now = self._clock()
        lease = self._take_lease()
        # No leaf outlives the CA that vouches for it.
        not_after = min(now + lifetime, self.issuing.not_valid_after_utc)
        for _ in range(SERIAL_ATTEMPTS):
            certificate = certificates.build_leaf(
                request,
                public,
                issuer=self.issuing,
                issuer_key=self._issuing_key,
                serial=self._serials(),
                # A short-lived certificate is backdated less, or most of its life would be over.
                not_before=now - min(BACKDATE, lifetime / 10),
                not_after=not_after,
            )
            entry = _entry_for(
                certificate,
                profile=request.profile.value,
                name=request.name,
                issued_at=now,
                issuer=self.issuing.serial_number,
                renewed_from=renewed_from,
                state=PENDING,
                owner=lease,
                destination=None if destination is None else str(Path(destination).absolute()),
            )
            try:
                self.inventory.add(entry)
            except SerialTaken:
                continue
            with self._pending_lock:
                self._pending.add(certificate.serial_number)
            return certificate, lease
        raise SerialTaken(
            f"{SERIAL_ATTEMPTS} serials in a row were already taken; serial source broken?"
        )

    def _take_lease(self) -> str:
        with self._pending_lock:
            if self._lease is None:
                self._lease = Lease(self.directory)
            return self._lease.token

    def _own_entry(self, cert: x509.Certificate) -> Entry:
        for issuing in (self.issuing, *self.retired):
            try:
                cert.verify_directly_issued_by(issuing)
                break
            except (ValueError, TypeError, InvalidSignature):
                continue
        else:
            raise UnknownCertificate(
                f"certificate {certificates.common_name(cert)!r} (serial {cert.serial_number:x}) "
                f"was not issued by {certificates.common_name(self.issuing)!r}"
            ) from None
        entry = self.inventory.get(cert.serial_number)
        if entry is None:
            raise UnknownCertificate(
                f"serial {cert.serial_number:x} is signed by this CA but not in its inventory"
            )
        return entry


def _load_issuing_key(
    path: Path,
    cert: x509.Certificate,
    root: x509.Certificate,
    passphrase: bytes | None,
    *,
    label: str,
) -> PrivateKey:
    _check_private(path)
    key = keys.load_private(path.read_bytes(), passphrase, source=str(path))
    if keys.public_der(key.public_key()) != keys.public_der(certificates.public_key_of(cert)):
        raise CorruptKey(f"{path} is not the key of {label}")
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CorruptCertificate(f"{label} is not signed by {ROOT_CRT}: {exc}") from None
    return key


def _is_encrypted(path: Path) -> bool:
    return b"ENCRYPTED" in path.read_bytes()


def _ca_name(root: x509.Certificate) -> str:
    from cryptography.x509.oid import NameOID

    names_ = root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names_[0].value) if names_ else certificates.common_name(root)


def _check_private(path: Path) -> None:
    # As ssh does with its keys: a CA key others can read (a careless `cp`, an archive restored
    # with its modes lost) is refused, encrypted or not, rather than trusted.
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureKeyFile(
            f"{path} has mode {mode:04o}; a CA key must be private to its owner (chmod 600)"
        )


def _passphrase_for_storage(passphrase: bytes | None, *, unencrypted: bool) -> bytes | None:
    if unencrypted:
        return None
    if not passphrase:
        raise PassphraseRequired(
            "CA keys are encrypted at rest: give a passphrase (LABGATE_CA_PASSPHRASE or "
            "--passphrase-file), or ask for unencrypted keys for a demo"
        )
    keys.check_new_passphrase(passphrase)
    return passphrase


def _refuse_if_denied(request: LeafRequest) -> None:
    decision = profiles.judge(request)
    if isinstance(decision, Denied):
        raise ProfileViolation(decision.reason)


def _lifetime(profile: Profile, days: int | None, lifetime: timedelta | None = None) -> timedelta:
    if lifetime is not None:
        if days is not None:
            raise InvalidRequest("give a certificate's lifetime in days or as a duration, not both")
        if lifetime < MIN_LIFETIME or lifetime > profiles.MAX_LIFETIME:
            raise InvalidRequest(
                f"a lifetime of {lifetime} is outside {MIN_LIFETIME} to {profiles.MAX_LIFETIME}"
            )
        return lifetime
    if days is None:
        return profile.default_lifetime
    if days < 1:
        raise InvalidRequest(f"--days must be at least 1, not {days}")
    lifetime = timedelta(days=days)
    if lifetime > profiles.MAX_LIFETIME:
        raise InvalidRequest(f"--days {days} is more than the {profiles.MAX_LIFETIME.days} allowed")
    return lifetime


def _entry_for(
    cert: x509.Certificate,
    *,
    profile: str,
    name: str,
    issued_at: datetime,
    issuer: int | None = None,
    renewed_from: int | None = None,
    state: str = ISSUED,
    owner: str | None = None,
    destination: str | None = None,
) -> Entry:
    return Entry(
        serial=cert.serial_number,
        profile=profile,
        name=name,
        identity=identity_of(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issued_at=issued_at,
        certificate_pem=certificates.pem(cert),
        renewed_from=renewed_from,
        state=state,
        owner=owner,
        destination=destination,
        issuer=issuer,
    )


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")


def open_inventory(directory: Path) -> SqliteInventory:
    """The inventory of the CA in `directory`, for reading without the CA's keys. What dead
    processes left pending is swept first when the reader may write there (no keys needed)."""
    path = Path(directory) / INVENTORY
    if not path.is_file():
        raise CaNotFound(f"no CA inventory in {directory} (missing {INVENTORY})")
    inventory = SqliteInventory.open(path)
    # A reader without write access (an auditor) still lists; the next signer sweeps.
    with suppress(PermissionError, sqlite3.OperationalError):
        sweep(Path(directory), inventory, now=_now)
    return inventory
