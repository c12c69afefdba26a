"""Revocation: the reasons a certificate may be revoked for, and the CRL the issuing CA signs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cryptography import x509

from labgate.pki.errors import InvalidRequest
from labgate.pki.inventory import Revocation
from labgate.pki.keys import PrivateKey, signature_hash

# RFC 5280 reason names as `openssl` and the CLI spell them. certificateHold and removeFromCRL are
# left out: labgate has no way to un-revoke, so a "hold" would be a lie.
REASONS: dict[str, x509.ReasonFlags] = {
    flag.value: flag
    for flag in x509.ReasonFlags
    if flag not in {x509.ReasonFlags.certificate_hold, x509.ReasonFlags.remove_from_crl}
}

DEFAULT_NEXT_UPDATE = timedelta(hours=24)


def reason_flag(reason: str) -> x509.ReasonFlags:
    try:
        return REASONS[reason]
    except KeyError:
        raise InvalidRequest(
            f"revocation reason {reason!r} is not one of {', '.join(sorted(REASONS))}"
        ) from None


def build_crl(
    revocations: Iterable[Revocation],
    *,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """A CRL of `revocations`, numbered `number`, valid from `this_update` until `next_update`.

    The revoked list is handed to the builder whole: adding entries one by one copies the list
    each time, which is quadratic and takes minutes at 100,000 entries.
    """
    if next_update <= this_update:
        raise InvalidRequest(f"next update {next_update} must come after this update {this_update}")
    entries = [_entry(revocation) for revocation in revocations]
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            ),
        ],
        revoked_certificates=entries,
    )
    return builder.sign(issuer_key, signature_hash(issuer_key))


# One shared reason extension per reason; RFC 5280 5.3.1: "unspecified" is left out entirely.
_REASON_EXTENSIONS: dict[str, list[x509.Extension[x509.ExtensionType]]] = {
    name: [] if flag is x509.ReasonFlags.unspecified
    else [x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(flag))]
    for name, flag in REASONS.items()
}  # fmt: skip


def _entry(revocation: Revocation) -> x509.RevokedCertificate:
    # The builder's constructor takes everything at once (a naive UTC date, as its setter would
    # make): at 100,000 entries the chained setters' copies cost a third of the CRL's time.
    try:
        extensions = _REASON_EXTENSIONS[revocation.reason]
    except KeyError:
        reason_flag(revocation.reason)  # raises, naming the reason
        raise
    revoked_at = revocation.revoked_at.astimezone(UTC).replace(tzinfo=None)
    return x509.RevokedCertificateBuilder(revocation.serial, revoked_at, extensions).build()
