"""Client certificates: issued to logged-in users and devices from their own CSRs, listed,
and revoked (by their holder or an administrator, or with the account that holds them).

The certificate names the caller and no one else: its only SAN is the caller's identity URI.
A CSR that asks for any other name (another common name, DNS names, other URIs) is refused
rather than quietly trimmed, and the issued certificate is checked once more before it leaves.

Revocation is recorded in the database, in the caller's transaction, together with whatever
caused it (a disabled user, a revoked device); that record is what every replica checks and what
the CRL in each bundle lists. The CA's own inventory file is told after the commit, as a copy:
if that copy fails (or the process dies first), nothing is half done, because the database
already refuses the certificate and the CRL is built from both; `sync_inventory` finishes the
copy at the next start.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from labgate.auth.tokens import certificate_thumbprint
from labgate.control import audit
from labgate.control.errors import Conflict, InvalidInput, NotFound
from labgate.control.principals import Principal, canonical_identity
from labgate.control.revocation import revoke_families
from labgate.control.standing import record_change
from labgate.control.tables import IssuedCertificate, RefreshToken
from labgate.control.transactions import after_commit
from labgate.pki.authority import ISSUING_PROFILE, ROOT_PROFILE, CertificateAuthority
from labgate.pki.errors import AlreadyRevoked, PkiError, UnknownCertificate
from labgate.pki.inventory import Entry, Inventory, Revocation
from labgate.pki.issued import Issued
from labgate.pki.profiles import Profile
from labgate.pki.revocation import REASONS

log = logging.getLogger("labgate.control")
Status = Literal["valid", "revoked", "expired"]
_CA_PROFILES = frozenset({ROOT_PROFILE, ISSUING_PROFILE})


def issue_for(
    session: Session,
    ca: CertificateAuthority,
    principal: Principal,
    csr_pem: bytes,
    *,
    days: int,
    now: datetime,
) -> Issued:
    _require_only_own_names(principal, csr_pem)
    profile = Profile.DEVICE if principal.kind == "device" else Profile.CLIENT
    try:
        issued = ca.sign_csr(csr_pem, profile, days=days)
    except PkiError as error:
        raise InvalidInput(f"certificate request refused: {error}") from None
    if _san_values(issued.certificate) != [principal.identity]:
        # Belt and braces: the CA's profile and our check above should make this impossible.
        ca.revoke(issued.serial, reason="unspecified")
        raise InvalidInput(f"the issued certificate would name more than {principal.identity}")
    session.add(
        IssuedCertificate(
            serial=str(issued.serial),
            subject=principal.identity,
            expires_at=issued.certificate.not_valid_after_utc,
            revoked=False,
            thumbprint=certificate_thumbprint(issued.certificate.public_bytes(Encoding.DER)),
            issued_at=now,
            profile=profile.value,
        )
    )
    audit.record(
        session,
        at=now,
        kind="certificate.issued",
        subject=principal.identity,
        serial=format(issued.serial, "x"),
    )
    # The CA's second phase, once the database holds the certificate too: from here it is in
    # the caller's hands. Were the commit to fail, the entry stays pending and the CA's next
    # sweep revokes it as never handed out.
    after_commit(session, lambda: ca.handed_out(issued))
    return issued


def _require_only_own_names(principal: Principal, csr_pem: bytes) -> None:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise InvalidInput("csr_pem is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise InvalidInput("the CSR's signature does not verify with its own public key")
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [principal.name]:
        raise InvalidInput(
            f"the CSR's common name must be exactly {principal.name!r} (the caller), got {names}"
        )
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    except (ValueError, x509.DuplicateExtension) as error:
        raise InvalidInput(f"the CSR's extensions do not parse: {error}") from None
    asked = [str(getattr(name, "value", name)) for name in san]
    if any(value != principal.identity for value in asked):
        raise InvalidInput(
            f"the CSR asks for names {asked}; a certificate from here names only "
            f"{principal.identity}"
        )


def _san_values(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(getattr(name, "value", name)) for name in san]


# -- listing and revoking ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRecord:
    """A certificate as the API shows it."""

    serial: int
    identity: str
    profile: str | None
    not_after: datetime
    issued_at: datetime | None
    revoked_at: datetime | None
    revocation_reason: str | None

    def status(self, now: datetime) -> Status:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.not_after <= now else "valid"


def list_certificates(
    session: Session,
    inventory: Inventory,
    principal: Principal,
    *,
    identity: str | None = None,
    status: Status | None = None,
    now: datetime,
) -> list[CertificateRecord]:
    """Every certificate for an administrator (the database's and the CA's), a holder's own
    for anyone else; filtered by identity and status."""
    visible, identity = _visible_identity(principal, identity)
    if not visible:
        return []
    query = select(IssuedCertificate)
    if identity is not None:
        query = query.where(IssuedCertificate.subject == identity)
    found = {int(row.serial): _record_of_row(row) for row in session.scalars(query)}
    for entry in inventory.entries():
        if entry.serial in found or entry.profile in _CA_PROFILES or entry.identity is None:
            continue
        if identity is None or entry.identity == identity:
            found[entry.serial] = _record_of_entry(entry)
    records = sorted(found.values(), key=lambda r: (r.issued_at is None, r.issued_at, r.serial))
    return [r for r in records if status is None or r.status(now) == status]


def _visible_identity(principal: Principal, identity: str | None) -> tuple[bool, str | None]:
    """Whose certificates `principal` may list when asking for `identity`: anyone's for an
    administrator, only its own for anyone else (False: nothing). `identity` is matched in
    its canonical form, as identities are stored."""
    if identity is not None:
        identity = canonical_identity(identity)
    if principal.is_admin:
        return True, identity
    if identity is not None and identity != principal.identity:
        return False, None
    return True, principal.identity


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificatePage:
    records: tuple[CertificateRecord, ...]  # valid ones first, each group by soonest end
    total: int


def certificate_page(
    session: Session,
    inventory: Inventory,
    principal: Principal,
    *,
    identity: str | None = None,
    status: Status | None = None,
    ending_within: timedelta | None = None,
    offset: int = 0,
    limit: int = 50,
    now: datetime,
) -> CertificatePage:
    """What `list_certificates` shows (the same rule of who sees what), filtered, ordered and
    cut to a page in the database; `ending_within`: valid ones that end within that long. The
    CA's own entries the database does not hold (a gateway's, `labgate ca issue`'s) are merged
    in."""
    visible, identity = _visible_identity(principal, identity)
    if not visible:
        return CertificatePage(records=(), total=0)
    row = IssuedCertificate
    valid = and_(row.revoked.is_(False), row.expires_at > now)
    where: list[ColumnElement[bool]] = []
    if identity is not None:
        where.append(row.subject == identity)
    if status == "valid":
        where.append(valid)
    elif status == "revoked":
        where.append(row.revoked.is_(True))
    elif status == "expired":
        where.append(and_(row.revoked.is_(False), row.expires_at <= now))
    if ending_within is not None:
        where.extend([valid, row.expires_at <= now + ending_within])
    ordered = (
        select(row)
        .where(*where)
        .order_by(case((valid, 0), else_=1), row.expires_at, row.serial)
        .limit(offset + limit)
    )
    held = [_record_of_row(r) for r in session.scalars(ordered)]
    total = int(session.scalar(select(func.count()).select_from(row).where(*where)) or 0)
    extra = _inventory_only(session, inventory, identity)
    extra = [
        r
        for r in extra
        if (status is None or r.status(now) == status)
        and (
            ending_within is None
            or (r.status(now) == "valid" and r.not_after <= now + ending_within)
        )
    ]
    merged = sorted(held + extra, key=lambda r: (r.status(now) != "valid", r.not_after, r.serial))
    return CertificatePage(records=tuple(merged[offset : offset + limit]), total=total + len(extra))


def _inventory_only(
    session: Session, inventory: Inventory, identity: str | None
) -> list[CertificateRecord]:
    """Leaf certificates in the CA's inventory that the database does not hold."""
    entries = [
        e
        for e in inventory.entries()
        if e.profile not in _CA_PROFILES
        and e.identity is not None
        and (identity is None or e.identity == identity)
    ]
    known: set[str] = set()
    serials = [str(e.serial) for e in entries]
    for first in range(0, len(serials), 500):
        chunk = serials[first : first + 500]
        known.update(
            session.scalars(
                select(IssuedCertificate.serial).where(IssuedCertificate.serial.in_(chunk))
            )
        )
    return [_record_of_entry(e) for e in entries if str(e.serial) not in known]


def revoke_one(
    session: Session,
    inventory: Inventory,
    principal: Principal,
    serial: int,
    *,
    reason: str,
    now: datetime,
    serving: int | None = None,
) -> CertificateRecord:
    """Revoke one certificate: an administrator any leaf, a holder only their own.

    Never the control server's own certificate (`serving`, the serial it presents now) nor the
    CA's: either would stop the server at its next reload or renewal, and both serials are
    public (every handshake shows them), so refusing them by name reveals nothing. A gateway's
    certificate stays revocable: that is how a stolen gateway is cut off."""
    _require_reason(reason)
    if serial == serving:
        raise Conflict(
            f"certificate {serial:x} is this server's own TLS certificate: revoking it would "
            "take the server down at its next reload; replace it (renewal) instead",
            code="own_certificate",
        )
    row = session.get(IssuedCertificate, str(serial))
    if row is None:
        # Issued by the CA on disk (a gateway's, or one from `labgate ca issue`): recorded here
        # from now on, so that every replica sees its revocation.
        entry = inventory.get(serial)
        if entry is not None and entry.profile in _CA_PROFILES:
            raise Conflict(
                f"certificate {serial:x} is the CA's own ({entry.profile}) certificate: it is "
                "not revoked through the API",
                code="own_certificate",
            )
        if entry is None or entry.identity is None:
            raise NotFound(f"no certificate with serial {serial:x}")
        row = _row_of_entry(entry)
        session.add(row)
    if not principal.is_admin and row.subject != principal.identity:
        raise NotFound(f"no certificate with serial {serial:x}")  # others' serials stay unprobed
    if row.revoked:
        raise Conflict(f"certificate {serial:x} is already revoked")
    mark_revoked(session, inventory, row, reason=reason, now=now, by=principal.identity)
    session.flush()
    return _record_of_row(row)


def revoke_held(
    session: Session, inventory: Inventory, identity: str, *, reason: str, now: datetime, by: str
) -> list[int]:
    """Revoke every unexpired certificate naming `identity`: those issued through the API and
    those the CA on disk issued; returns their serials."""
    _require_reason(reason)
    rows = {
        row.serial: row
        for row in session.scalars(
            select(IssuedCertificate).where(IssuedCertificate.subject == identity)
        )
    }
    for entry in inventory.entries(unexpired_at=now):
        if entry.identity == identity and str(entry.serial) not in rows:
            if entry.revoked_at is not None or entry.profile in _CA_PROFILES:
                continue
            row = _row_of_entry(entry)
            session.add(row)
            rows[row.serial] = row
    revoked = []
    for row in rows.values():
        if row.revoked or row.expires_at <= now:
            continue
        mark_revoked(session, inventory, row, reason=reason, now=now, by=by)
        revoked.append(int(row.serial))
    return revoked


def mark_revoked(
    session: Session,
    inventory: Inventory,
    row: IssuedCertificate,
    *,
    reason: str,
    now: datetime,
    by: str,
) -> None:
    """Record the revocation, end the token families bound to the certificate, wake gateways,
    and copy the revocation to the CA's inventory once the transaction holds."""
    row.revoked = True
    row.revoked_at = now
    row.revocation_reason = reason
    if row.thumbprint is not None:
        families = session.scalars(
            select(RefreshToken.family_id)
            .where(RefreshToken.cnf_thumbprint == row.thumbprint)
            .distinct()
        ).all()
        revoke_families(session, list(families), now=now)
    record_change(session)
    audit.record(
        session,
        at=now,
        kind="certificate.revoked",
        subject=row.subject,
        serial=format(int(row.serial), "x"),
        reason=reason,
        by=by,
    )
    serial = int(row.serial)
    after_commit(session, lambda: copy_to_inventory(inventory, serial, reason, now))


def copy_to_inventory(inventory: Inventory, serial: int, reason: str, when: datetime) -> None:
    # Revoked there already, or issued by another replica's copy of the CA: nothing to copy.
    with contextlib.suppress(AlreadyRevoked, UnknownCertificate):
        inventory.revoke(serial, reason=reason, when=when)


def sync_inventory(session: Session, inventory: Inventory, *, now: datetime) -> int:
    """Copy to the CA's inventory the revocations it missed (a copy cut short); the count."""
    copied = 0
    for row in session.scalars(
        select(IssuedCertificate).where(
            IssuedCertificate.revoked.is_(True), IssuedCertificate.expires_at > now
        )
    ):
        entry = inventory.get(int(row.serial))
        if entry is not None and entry.revoked_at is None:
            copy_to_inventory(
                inventory,
                entry.serial,
                row.revocation_reason or "unspecified",
                row.revoked_at or now,
            )
            copied += 1
    return copied


def crl_revocations(session: Session, *, now: datetime) -> list[Revocation]:
    """The database's revocations of unexpired certificates, for the CRL."""
    rows = session.scalars(
        select(IssuedCertificate).where(
            IssuedCertificate.revoked.is_(True), IssuedCertificate.expires_at > now
        )
    )
    return [
        Revocation(
            serial=int(row.serial),
            revoked_at=row.revoked_at or now,
            reason=row.revocation_reason or "unspecified",
        )
        for row in rows
    ]


def _require_reason(reason: str) -> None:
    if reason not in REASONS:
        raise InvalidInput(
            f"revocation reason {reason!r} is not one of {', '.join(sorted(REASONS))}"
        )


def _row_of_entry(entry: Entry) -> IssuedCertificate:
    certificate = x509.load_pem_x509_certificate(entry.certificate_pem)
    return IssuedCertificate(
        serial=str(entry.serial),
        subject=entry.identity or "",
        expires_at=entry.not_after,
        revoked=entry.revoked_at is not None,
        revoked_at=entry.revoked_at,
        revocation_reason=entry.revocation_reason,
        thumbprint=certificate_thumbprint(certificate.public_bytes(Encoding.DER)),
        issued_at=entry.issued_at,
        profile=entry.profile,
    )


def _record_of_row(row: IssuedCertificate) -> CertificateRecord:
    return CertificateRecord(
        serial=int(row.serial),
        identity=row.subject,
        profile=row.profile,
        not_after=row.expires_at,
        issued_at=row.issued_at,
        revoked_at=row.revoked_at if row.revoked else None,
        revocation_reason=row.revocation_reason,
    )


def _record_of_entry(entry: Entry) -> CertificateRecord:
    return CertificateRecord(
        serial=entry.serial,
        identity=entry.identity or "",
        profile=entry.profile,
        not_after=entry.not_after,
        issued_at=entry.issued_at,
        revoked_at=entry.revoked_at,
        revocation_reason=entry.revocation_reason,
    )
