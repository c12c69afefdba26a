"""A scan's results for people (a Rich table) and for scripts (JSON), and its exit status.

Exit status, by the worst confirmed finding: 0 nothing above low, 1 medium (or any check
inconclusive), 2 high or critical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from labgate.scan.findings import Finding, Severity, Status
from labgate.scan.scanner import InstrumentScan
from labgate.scan.tlsprobe import Inconclusive, PortFacts

SCHEMA = "labgate-scan/1"


def exit_status(scans: Sequence[InstrumentScan]) -> int:
    return status_of((f.severity, f.status) for scan in scans for f in scan.findings)


def status_of(judged: Iterable[tuple[Severity, Status]]) -> int:
    """The exit status for findings given as (severity, status) pairs."""
    every = list(judged)
    worst = max((severity for severity, status in every if status is Status.FAIL), default=None)
    if worst is not None and worst >= Severity.HIGH:
        return 2
    if worst is not None and worst >= Severity.MEDIUM:
        return 1
    return 1 if any(status is Status.INCONCLUSIVE for _, status in every) else 0


def as_json(scans: Sequence[InstrumentScan]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "exit_status": exit_status(scans),
        "instruments": [_instrument(scan) for scan in scans],
    }


def _instrument(scan: InstrumentScan) -> dict[str, Any]:
    usage = scan.usage
    return {
        "host": scan.target.host,
        "seconds": round(scan.seconds, 2),
        "budget": {
            "concurrent": scan.limits.concurrent,
            "per_second": scan.limits.per_second,
            "total": scan.limits.total,
            "connections": usage.attempts,
            "refused": usage.refused,
            "peak_open": usage.peak_open,
        },
        "stopped": scan.stopped,
        "ports": [_port(facts) for facts in scan.ports],
        "findings": [_finding(finding) for finding in scan.findings],
    }


def _port(facts: PortFacts) -> dict[str, Any]:
    scpi = facts.scpi
    cert = facts.certificate
    return {
        "port": facts.port,
        "state": facts.state,
        "service": facts.service,
        "banner": None
        if scpi is None
        else {
            "raw": scpi.banner.raw,
            "product": scpi.banner.product,
            "version": scpi.banner.version,
            "build": scpi.banner.build,
            "session": scpi.banner.session,
        },
        "scpi": None
        if scpi is None
        else {
            "transport": facts.scpi_transport,
            "level_at_connect": scpi.level_at_connect.label
            if scpi.level_at_connect is not None
            else None,
            "password_free_limit": scpi.password_free_limit.label
            if scpi.password_free_limit is not None
            else None,
            "passwords_checked": scpi.passwords_checked,
            "passwords_tried": scpi.passwords_tried,
            "weak_passwords": [
                {
                    "password": weak.masked,
                    "level": weak.level.label if weak.level is not None else None,
                }
                for weak in scpi.weak_passwords
            ],
        },
        "scpi_error": facts.scpi_error,
        "other_banner": facts.banner_bytes,
        "protocols": {version.value: _answer(answer) for version, answer in facts.versions.items()},
        "suites": {
            version.value: {
                "accepted": [_suite_name(suite) for suite in suites],
                "complete": facts.suites_complete.get(version, False),
            }
            for version, suites in facts.suites.items()
        },
        "certificate": None
        if cert is None
        else {
            "subject": cert.subject,
            "issuer": cert.issuer,
            "self_signed": cert.self_signed,
            "not_after": cert.not_after.isoformat(),
            "days_left": cert.days_left,
            "key": cert.key,
            "pin": cert.pin,
        },
    }


def _suite_name(suite: int) -> str:
    from labgate.scan.hello import suite_name

    return suite_name(suite)


def _answer(answer: object) -> dict[str, Any]:
    from labgate.scan.hello import Accepted, Refused

    if isinstance(answer, Accepted):
        return {"result": "accepted", "suite": answer.suite_name}
    if isinstance(answer, Refused):
        return {"result": "refused", "reason": answer.reason}
    assert isinstance(answer, Inconclusive)
    return {"result": "inconclusive", "reason": answer.reason}


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "id": finding.id,
        "title": finding.title,
        "severity": finding.severity.label,
        "status": finding.status.value,
        "endpoint": finding.endpoint,
        "evidence": finding.evidence,
        "fix": finding.fix,
    }


_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def render(scans: Sequence[InstrumentScan], console: Any) -> None:
    """Print a table of ports and one of findings per instrument on a Rich console."""
    from rich.table import Table
    from rich.text import Text

    for scan in scans:
        usage = scan.usage
        console.print(
            Text(f"{scan.target.host}: ", style="bold")
            + Text(
                f"{usage.attempts} connections of "
                f"{scan.limits.total} (at most {scan.limits.concurrent} at a time, "
                f"{scan.limits.per_second:g}/s), {scan.seconds:.1f} s"
                + (f"; stopped early: {scan.stopped}" if scan.stopped else "")
            )
        )
        ports = Table("port", "state", "service", "protocols", "banner / certificate")
        for facts in scan.ports:
            protocols = " ".join(
                version.value.replace("TLSv", "") + _mark(answer)
                for version, answer in facts.versions.items()
            )
            detail = ""
            if facts.scpi is not None:
                banner = facts.scpi.banner
                detail = f"{banner.product} {banner.version} session {banner.session}"
            if facts.certificate is not None:
                cert = facts.certificate
                detail += (" | " if detail else "") + (
                    f"{cert.key}, {'self-signed' if cert.self_signed else cert.issuer}, "
                    f"{cert.days_left} days"
                )
            if facts.scpi_error and not detail:
                detail = facts.scpi_error
            ports.add_row(str(facts.port), facts.state, facts.service, protocols, Text(detail))
        console.print(ports)
        table = Table("id", "severity", "status", "endpoint", "evidence", "fix")
        for column in table.columns:
            column.overflow = "fold"
        order = sorted(scan.findings, key=lambda f: (-f.severity, f.id))
        for finding in order:
            style = _STYLE[finding.severity]
            table.add_row(
                finding.id,
                Text(finding.severity.label, style=style),
                finding.status.value,
                finding.endpoint,
                Text(finding.evidence),
                Text(finding.fix),
            )
        console.print(table if order else "no findings")


def _mark(answer: object) -> str:
    from labgate.scan.hello import Accepted

    if isinstance(answer, Accepted):
        return "+"
    if isinstance(answer, Inconclusive):
        return "?"
    return "-"
