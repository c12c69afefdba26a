"""Whether a verified client may have a session on an instrument now, and if not, why.

One function answers it, with the same checks in the same order, wherever the question comes up:
right after the TLS handshake, again once an upstream slot is free (a reload may have happened
during the wait), and for every open session on each reload. OpenSSL has already checked the
chain, the dates and the CRL at a full handshake; a resumed TLS session and an open session were
not checked again since, so every check is made here too, and each refusal says which failed.
The enhanced-security mode's `full` switch caps the level here too, the one place that decides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from labgate.gateway.client_tls import PeerCertificate, still_trusted
from labgate.gateway.grants import NotGranted
from labgate.gateway.state import LiveState
from labgate.posture.mode import cap_level
from labgate.scpi.access import AccessLevel


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    level: AccessLevel  # the grant's level, or less under [secure]: the most the session may have
    limit: str = ""  # why `level` is below the grant ([secure] full), for ACC refusals and audit


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    kind: (
        str  # for the audit record and the metric: identity, expired, revoked, untrusted, no_grant
    )
    reason: str  # in words, for the client, the log and the audit record


Admission = Admitted | Refused


def admit(
    state: LiveState,
    certificate: PeerCertificate,
    *,
    instrument: str,
    admitted_under: frozenset[bytes],
    now: datetime,
) -> Admission:
    """The verdict for `certificate` on `instrument` under `state`; `admitted_under` is the set of
    client CA certificates its TLS context was built with (see `still_trusted`)."""
    if not certificate.identities:
        return Refused(kind="identity", reason="the client certificate carries no labgate: SAN URI")
    if len(certificate.identities) > 1:
        return Refused(
            kind="identity",
            reason=f"the client certificate carries {len(certificate.identities)} labgate: SAN "
            f"URIs ({', '.join(certificate.identities)}); exactly one must name its holder",
        )
    identity = certificate.identities[0]
    if certificate.not_after <= now:
        return Refused(
            kind="expired",
            reason=f"the client certificate of {identity} expired "
            f"{certificate.not_after:%Y-%m-%dT%H:%M:%SZ}",
        )
    if any(crl.revokes(certificate) for crl in state.revoked):
        return Refused(kind="revoked", reason="client certificate revoked")
    if not still_trusted(certificate, admitted_under, state.anchors):
        return Refused(
            kind="untrusted", reason="the client CA that admitted it is no longer trusted"
        )
    decision = state.grants.decide(identity, instrument)
    if isinstance(decision, NotGranted):
        return Refused(kind="no_grant", reason=decision.reason)
    capped = cap_level(state.config.secure, decision.level)
    return Admitted(level=capped.level, limit=capped.reason)
