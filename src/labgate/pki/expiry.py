"""How long the certificates a process serves or presents have left, for `/metrics` and warnings.

The files are read again at every scrape, so a certificate replaced on disk (a renewal, a reload)
is what the gauge shows next, with nothing to keep in step. Every certificate of a chain file is
reported (the leaf and the intermediates it sends), each labelled by its role, subject and serial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# A standalone process warns in its log from this long before a certificate expires.
WARN_BEFORE = timedelta(days=30)
DAYS_LEFT = "labgate_certificate_days_left"

Sources = Callable[[], Iterable[tuple[str, Path]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """One certificate a process serves or presents."""

    role: str  # what it is used for: "server", "control-client", ...
    path: Path
    subject: str
    serial: int
    not_after: datetime

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


def held_in(role: str, path: Path) -> list[Held]:
    """Every certificate in the PEM file at `path`; none if it cannot be read (the process that
    serves it reports that on its own)."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return []
    return [
        Held(
            role=role,
            path=path,
            subject=c.subject.rfc4514_string(),
            serial=c.serial_number,
            not_after=c.not_valid_after_utc,
        )
        for c in certs
    ]


def held(sources: Iterable[tuple[str, Path]]) -> list[Held]:
    seen: set[tuple[str, int]] = set()
    out = []
    for role, path in sources:
        for one in held_in(role, path):
            if (one.role, one.serial) not in seen:
                seen.add((one.role, one.serial))
                out.append(one)
    return out


def expiring(
    certificates: Sequence[Held], *, now: datetime, within: timedelta = WARN_BEFORE
) -> list[str]:
    """A warning for each certificate expiring within `within` (or expired), soonest first."""
    lines = []
    for one in sorted(certificates, key=lambda h: h.not_after):
        if one.not_after - now > within:
            continue
        when = one.not_after.strftime("%Y-%m-%dT%H:%MZ")
        if one.not_after <= now:
            lines.append(f"the {one.role} certificate {one.subject} in {one.path} expired {when}")
        else:
            lines.append(
                f"the {one.role} certificate {one.subject} in {one.path} expires {when}, "
                f"in {one.days_left(now):.1f} days: renew it"
            )
    return lines


class DaysLeftCollector(Collector):
    """`labgate_certificate_days_left{role, subject, serial}`, from the files at each scrape."""

    def __init__(self, sources: Sources, clock: Callable[[], datetime] | None = None) -> None:
        self._sources = sources
        self._clock = clock or (lambda: datetime.now(UTC))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            DAYS_LEFT,
            "Days until each certificate served or presented expires (negative: expired)",
            labels=["role", "subject", "serial"],
        )
        now = self._clock()
        for one in held(self._sources()):
            gauge.add_metric([one.role, one.subject, format(one.serial, "x")], one.days_left(now))
        yield gauge

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(DAYS_LEFT, "", labels=["role", "subject", "serial"])
