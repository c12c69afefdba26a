"""The order of a scan of one instrument, within its connection budget.

Most important first, so that a budget that runs out leaves the least unknown: first contact
with every port (banner, SCPI and its levels, weak passwords once), then each TLS port's protocol
matrix, then SCPI over TLS and the certificate, then suite enumeration for the protocols that a
profile could still pass (TLS 1.2 down to 1.0), SSLv3's last (it fails every profile anyway).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from labgate.scan import findings, tlsprobe
from labgate.scan.budget import Budget, Limits, Usage
from labgate.scan.findings import Context, Finding
from labgate.scan.hello import Version
from labgate.scan.scpiprobe import WEAK_PASSWORDS
from labgate.scan.targets import Target
from labgate.scan.tlsprobe import PortFacts


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """What a gateway configuration says about one upstream endpoint."""

    instrument: str
    pin: str | None


@dataclass(slots=True, kw_only=True)
class InstrumentScan:
    target: Target
    limits: Limits
    ports: list[PortFacts] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stopped: str | None = None  # why the scan stopped early, if it did
    seconds: float = 0.0


def scan_instrument(
    target: Target,
    *,
    limits: Limits,
    known: Mapping[tuple[str, int], Known] | None = None,
    check_passwords: bool = True,
) -> InstrumentScan:
    started = time.monotonic()
    budget = Budget(limits)
    result = InstrumentScan(target=target, limits=limits, usage=budget.usage)
    passwords = list(WEAK_PASSWORDS) if check_passwords else None
    for port in target.ports:
        facts = tlsprobe.first_contact(budget, target.host, port, passwords=passwords)
        if facts.scpi is not None and facts.scpi.passwords_checked:
            passwords = None  # the instrument's passwords are the same on every port
        result.ports.append(facts)
    tls_ports = [facts for facts in result.ports if facts.service == "tls"]
    for facts in tls_ports:
        tlsprobe.version_matrix(budget, target.host, facts)
    for facts in tls_ports:
        tlsprobe.tls_session(budget, target.host, facts)
    for version in (Version.TLS12, Version.TLS11, Version.TLS10, Version.TLS13, Version.SSL3):
        for facts in tls_ports:
            tlsprobe.enumerate_suites(budget, target.host, facts, version)
    result.stopped = budget.silent
    for facts in result.ports:
        entry = (known or {}).get((target.host, facts.port))
        context = Context(
            host=target.host,
            instrument=entry.instrument if entry else None,
            pin=entry.pin if entry else None,
            config_given=known is not None,
        )
        for finding in findings.for_port(facts, context):
            # The firmware is the instrument's, not a port's: said once.
            if finding.id == "LG-FW-001" and any(f.id == finding.id for f in result.findings):
                continue
            result.findings.append(finding)
    if budget.silent is not None:
        result.findings.append(
            findings._finding(
                "LG-SCAN-001",
                findings.Severity.MEDIUM,
                target.host,
                f"the scan stopped early: {budget.silent}",
                "check the instrument is well before re-running; what was not probed is "
                "reported inconclusive",
                findings.Status.INCONCLUSIVE,
            )
        )
    result.seconds = time.monotonic() - started
    return result


def known_from_gateway(path: object) -> dict[tuple[str, int], Known]:
    """Each configured instrument's upstream address, with its name and pin."""
    from labgate.gateway.config import load_config

    config = load_config(path)  # type: ignore[arg-type]
    return {
        (ins.upstream.endpoint.host, ins.upstream.endpoint.port): Known(
            instrument=ins.name, pin=ins.upstream_pin
        )
        for ins in config.instruments
    }
