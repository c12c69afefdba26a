"""What `labgate secure --check` found: each fact verified, each drift, and notes."""

from __future__ import annotations

from dataclasses import dataclass, field

from labgate.posture.listening import Comparison


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    switch: str  # pwd, fw, full
    text: str


@dataclass(slots=True, kw_only=True)
class CheckReport:
    on: str  # what the file turns on, as `labgate secure` prints it
    verified: list[Finding] = field(default_factory=list)
    drift: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def add_comparison(report: CheckReport, comparison: Comparison) -> None:
    report.verified += [Finding(switch="fw", text=text) for text in comparison.verified]
    report.drift += [Finding(switch="fw", text=text) for text in comparison.drift]
    report.notes += [f"fw: {text}" for text in comparison.unchecked]
