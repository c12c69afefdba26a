"""What the facts of a scan mean: findings with stable ids, a severity, evidence and a fix.

An id names one kind of problem for good (`LG-TLS-001` is always "SSLv3 accepted"); scripts may
rely on them. A check that could not be made is a finding with status `inconclusive`, never a
pass or a fail guessed from silence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from labgate.scan.hello import Accepted, Version, suite_name
from labgate.scan.profiles import grade
from labgate.scan.tlsprobe import Inconclusive, PortFacts
from labgate.scpi.access import AccessLevel


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Status(StrEnum):
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    id: str
    title: str
    severity: Severity
    status: Status
    endpoint: str
    evidence: str
    fix: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What the scan knows about an endpoint besides its own answers (from `--config`)."""

    host: str
    instrument: str | None = None  # the gateway's name for it, if configured as an upstream
    pin: str | None = None  # the gateway's upstream_pin for it
    config_given: bool = False


# Titles of every finding, by id: the catalogue the README lists.
CATALOGUE = {
    "LG-NET-001": "instrument SCPI reachable other than through the gateway",
    "LG-SCPI-001": "SCPI in plaintext",
    "LG-SCPI-002": "SCPI answers without a password above Guest",
    "LG-SCPI-003": "a weak or common password authenticates",
    "LG-FW-001": "firmware known to speak plaintext only",
    "LG-PORT-001": "a service other than the instrument's SCPI answers",
    "LG-TLS-001": "SSLv3 accepted",
    "LG-TLS-002": "TLS 1.0 or 1.1 accepted",
    "LG-TLS-003": "suites outside Mozilla intermediate accepted",
    "LG-TLS-004": "suites below the legacy-instrument profile accepted",
    "LG-TLS-005": "no TLS 1.2 or 1.3",
    "LG-CERT-001": "self-signed certificate",
    "LG-CERT-002": "certificate expired or expiring",
    "LG-CERT-003": "weak certificate key",
    "LG-CERT-004": "certificate key does not match the gateway's upstream_pin",
    "LG-CERT-005": "no pin held for this TLS endpoint",
    "LG-SCAN-001": "part of the scan could not be completed",
}
EXPIRY_WARNING_DAYS = 30
_PLAINTEXT_FIRMWARE = (1, 3, 1)  # <= 1.3.1 speaks plaintext only (notes on the instrument)


def _finding(
    id: str,
    severity: Severity,
    endpoint: str,
    evidence: str,
    fix: str,
    status: Status = Status.FAIL,
) -> Finding:
    return Finding(
        id=id,
        title=CATALOGUE[id],
        severity=severity,
        status=status,
        endpoint=endpoint,
        evidence=evidence,
        fix=fix,
    )


def _instrument_block(context: Context, scheme: str, port: int, pin: str | None = None) -> str:
    name = context.instrument or "NAME"
    lines = [
        "[[instrument]]",
        f'name = "{name}"',
        f'upstream = "{scheme}://{_host(context.host)}:{port}"',
    ]
    if pin:
        lines.append(f'upstream_pin = "{pin}"')
    lines.append('password_file = "instrument-password"  # 0600')
    return "\n".join(lines)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def for_port(facts: PortFacts, context: Context) -> Iterator[Finding]:
    """Every finding one port's facts support."""
    endpoint = f"{_host(context.host)}:{facts.port}"
    if facts.state == "inconclusive":
        yield _finding(
            "LG-SCAN-001",
            Severity.MEDIUM,
            endpoint,
            f"port not probed: {facts.scpi_error}",
            "re-run when the instrument is idle; raise --max-connections only if it copes",
            Status.INCONCLUSIVE,
        )
        return
    if facts.state == "closed":
        return
    if facts.service == "other":
        yield _finding(
            "LG-PORT-001",
            Severity.HIGH,
            endpoint,
            f"answered with {facts.banner_bytes!r} (a console on 2323 gives a "
            "shell on the instrument)",
            "turn the service off, or firewall the port so that only the gateway's "
            "host reaches the instrument",
        )
    yield from _scpi_findings(facts, context, endpoint)
    yield from _tls_findings(facts, context, endpoint)
    yield from _certificate_findings(facts, context, endpoint)


def _scpi_findings(facts: PortFacts, context: Context, endpoint: str) -> Iterator[Finding]:
    scpi = facts.scpi
    if scpi is None:
        return
    where = "plaintext" if facts.scpi_transport == "plain" else f"over {facts.scpi_transport}"
    banner = scpi.banner
    configured = (
        f"it is the gateway's upstream for {context.instrument!r}"
        if context.instrument
        else "no gateway configuration names it"
    )
    yield _finding(
        "LG-NET-001",
        Severity.HIGH,
        endpoint,
        f"SCPI answered this scanner directly ({where}, banner {banner.raw!r}); {configured}",
        "firewall the instrument so that only the gateway's host reaches it, and "
        "give users the gateway:\n" + _instrument_block(context, _scheme(facts), facts.port),
    )
    if facts.scpi_transport == "plain":
        yield _finding(
            "LG-SCPI-001",
            Severity.HIGH,
            endpoint,
            f"READy banner and replies in the clear: product {banner.product}, "
            f"firmware {banner.version}, session {banner.session}",
            "keep plaintext SCPI on an isolated segment between instrument and "
            "gateway only:\n" + _instrument_block(context, "plain", facts.port),
        )
    limit = scpi.password_free_limit
    if limit is None:
        yield _finding(
            "LG-SCPI-002",
            Severity.MEDIUM,
            endpoint,
            "the instrument would not say which level it grants without a password",
            "check CONF access accessLimits on the instrument",
            Status.INCONCLUSIVE,
        )
    elif limit > AccessLevel.GUEST:
        severity = Severity.CRITICAL if limit >= AccessLevel.CONTROLLER else Severity.MEDIUM
        root = (
            " Controller is root on this instrument (SYST:EXEC runs shell commands)"
            if limit >= AccessLevel.CONTROLLER
            else ""
        )
        yield _finding(
            "LG-SCPI-002",
            severity,
            endpoint,
            f"ACC grants {limit.label} without a password (level at connect: "
            f"{scpi.level_at_connect.label if scpi.level_at_connect is not None else '?'}).{root}",
            "lower the password-free limit to Guest on the instrument "
            "(CONF access accessLimits default Guest) and let the gateway log in "
            "with its own password:\n"
            'password_file = "instrument-password"  # in the [[instrument]] table',
        )
    if scpi.passwords_checked:
        for weak in scpi.weak_passwords:
            yield _finding(
                "LG-SCPI-003",
                Severity.CRITICAL,
                endpoint,
                f"{weak.masked} authenticated by CHAL?/AUTH (session ceiling then "
                f"{weak.level.label if weak.level is not None else '?'}); "
                f"{scpi.passwords_tried} weak passwords tried, none sent",
                "replace the instrument's passwords with generated ones, known only "
                "to the gateway (its password_file, mode 0600)",
            )
    version = _firmware(banner.version)
    if version is not None and version <= _PLAINTEXT_FIRMWARE:
        yield _finding(
            "LG-FW-001",
            Severity.MEDIUM,
            endpoint,
            f"firmware {banner.version} (<= 1.3.1 speaks plaintext SCPI only)",
            "upgrade the firmware, or keep the instrument on a segment only the gateway reaches",
        )


def _tls_findings(facts: PortFacts, context: Context, endpoint: str) -> Iterator[Finding]:
    if not facts.versions:
        return
    answers = facts.versions
    accepted = facts.accepted
    pin = facts.certificate.pin if facts.certificate else None
    legacy_fix = (
        "the instrument cannot be changed: put it behind the gateway, which speaks "
        "TLS 1.2/1.3 to clients and the old protocol only on the instrument's own "
        "segment:\n" + _instrument_block(context, "sslv3", facts.port, pin)
    )
    if isinstance(answers.get(Version.SSL3), Accepted):
        yield _finding(
            "LG-TLS-001",
            Severity.HIGH,
            endpoint,
            f"SSLv3 handshake answered with {_chosen(answers[Version.SSL3])}",
            legacy_fix,
        )
    old = [v for v in (Version.TLS10, Version.TLS11) if isinstance(answers.get(v), Accepted)]
    if old:
        yield _finding(
            "LG-TLS-002",
            Severity.MEDIUM,
            endpoint,
            "accepted " + ", ".join(f"{v} ({_chosen(answers[v])})" for v in old),
            legacy_fix,
        )
    for version in (Version.SSL3, Version.TLS10, Version.TLS11, Version.TLS12, Version.TLS13):
        if isinstance(answers.get(version), Inconclusive):
            reason = answers[version].reason  # type: ignore[union-attr]
            yield _finding(
                "LG-TLS-001"
                if version is Version.SSL3
                else "LG-TLS-002"
                if version in (Version.TLS10, Version.TLS11)
                else "LG-TLS-005",
                Severity.MEDIUM,
                endpoint,
                f"{version} probe: {reason}",
                "re-run the scan",
                Status.INCONCLUSIVE,
            )
    if accepted and not any(v in accepted for v in (Version.TLS12, Version.TLS13)):
        yield _finding(
            "LG-TLS-005",
            Severity.INFO,
            endpoint,
            "only " + ", ".join(accepted) + "; modern clients (qslib) cannot connect",
            legacy_fix,
        )
    below_intermediate: list[str] = []
    below_legacy: list[str] = []
    for version, suites in facts.suites.items():
        for suite in suites:
            name = suite_name(suite)
            graded = grade(version, name)
            if version in (Version.TLS12, Version.TLS13) and not graded.intermediate:
                below_intermediate.append(f"{version} {name}")
            if version is not Version.SSL3 and not graded.legacy_instrument:
                below_legacy.append(f"{version} {name} ({graded.why})")
    incomplete = [
        v for v, done in facts.suites_complete.items() if not done and v is not Version.TLS13
    ]
    not_listed = [v for v in accepted if v not in facts.suites and v is not Version.TLS13]
    partial = ", ".join(sorted({*incomplete, *not_listed}))
    if below_intermediate:
        yield _finding(
            "LG-TLS-003",
            Severity.MEDIUM,
            endpoint,
            "; ".join(below_intermediate),
            "offer Mozilla intermediate only; for an instrument that cannot, the "
            "gateway does it for its clients (labgate gateway serves that profile)",
        )
    if below_legacy:
        yield _finding("LG-TLS-004", Severity.HIGH, endpoint, "; ".join(below_legacy), legacy_fix)
    if partial:
        yield _finding(
            "LG-TLS-004",
            Severity.MEDIUM,
            endpoint,
            f"suites of {partial} not fully enumerated (connection budget or no "
            "answer); only the ones listed were graded",
            "re-run with a larger --max-connections if the instrument copes",
            Status.INCONCLUSIVE,
        )


def _certificate_findings(facts: PortFacts, context: Context, endpoint: str) -> Iterator[Finding]:
    cert = facts.certificate
    if cert is None:
        return
    pin_line = f'upstream_pin = "{cert.pin}"'
    if cert.self_signed:
        yield _finding(
            "LG-CERT-001",
            Severity.LOW,
            endpoint,
            f"subject {cert.subject}, self-signed, {cert.key}",
            "nothing can vouch for a self-signed key: the gateway pins it "
            f"(check it on a trusted path first: labgate pin):\n{pin_line}",
        )
    if cert.days_left < 0:
        yield _finding(
            "LG-CERT-002",
            Severity.HIGH,
            endpoint,
            f"expired {cert.not_after:%Y-%m-%d}",
            "renew the certificate",
        )
    elif cert.days_left < EXPIRY_WARNING_DAYS:
        yield _finding(
            "LG-CERT-002",
            Severity.MEDIUM,
            endpoint,
            f"expires {cert.not_after:%Y-%m-%d} ({cert.days_left} days left)",
            "renew the certificate; a pinned key may stay the same",
        )
    weak = (cert.key_type in ("RSA", "DSA") and (cert.key_bits or 0) < 2048) or (
        cert.key_type == "EC" and (cert.key_bits or 0) < 256
    )
    if weak:
        yield _finding(
            "LG-CERT-003",
            Severity.HIGH,
            endpoint,
            f"{cert.key} key",
            "a new key of RSA 2048+ or EC P-256+",
        )
    if context.pin is not None and context.pin != cert.pin:
        yield _finding(
            "LG-CERT-004",
            Severity.HIGH,
            endpoint,
            f"the gateway pins {context.pin} for {context.instrument!r}; this "
            f"endpoint shows {cert.pin}",
            "find out why the key changed before trusting it; if the new key is "
            f"the instrument's own (checked on a trusted path):\n{pin_line}",
        )
    elif context.config_given and context.pin is None:
        yield _finding(
            "LG-CERT-005",
            Severity.INFO,
            endpoint,
            f"no [[instrument]] in the gateway configuration has this upstream; key {cert.pin}",
            "if this is an instrument, put it behind the gateway:\n"
            + _instrument_block(
                context, "tls" if _modern(facts) else "sslv3", facts.port, cert.pin
            ),
        )


def _modern(facts: PortFacts) -> bool:
    return any(v in facts.accepted for v in (Version.TLS12, Version.TLS13))


def _scheme(facts: PortFacts) -> str:
    if facts.scpi_transport == "plain":
        return "plain"
    return "tls" if _modern(facts) else "sslv3"


def _chosen(answer: object) -> str:
    return answer.suite_name if isinstance(answer, Accepted) else "?"


def _firmware(text: str | None) -> tuple[int, ...] | None:
    if not text or not re.fullmatch(r"\d+(\.\d+){0,3}", text):
        return None
    return tuple(int(part) for part in text.split("."))
