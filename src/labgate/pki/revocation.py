"""Revocation: the reasons a certificate may be revoked for, and the CRL the issuing CA signs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

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


def _entry(revocation: Revocation) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(revocation.serial)
        .revocation_date(revocation.revoked_at)
    )
    # RFC 5280 5.3.1: the reason code should be absent rather than "unspecified".
    if revocation.reason != x509.ReasonFlags.unspecified.value:
        builder = builder.add_extension(
            x509.CRLReason(reason_flag(revocation.reason)), critical=False
        )
    return builder.build()
