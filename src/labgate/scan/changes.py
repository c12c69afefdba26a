"""What changed since a previous scan (`labgate scan --since FILE`): new, changed and resolved
findings, and an exit status by the new ones alone.

A finding is the same finding when its instrument (host), id and endpoint are the same. It has
changed when its severity or status did; its evidence alone (days left on a certificate, say)
changes from one scan to the next without being news. A finding of the previous report is
resolved only when its instrument was scanned again and did not show it: an instrument left
out this time resolves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labgate.scan.errors import ScanError
from labgate.scan.findings import Severity, Status


class PreviousReportError(ScanError):
    """The `--since` file is not a scan report this version can compare with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    new: tuple[dict[str, Any], ...]  # findings as the JSON report has them, with "host"
    changed: tuple[tuple[dict[str, Any], dict[str, Any]], ...]  # (before, after)
    resolved: tuple[dict[str, Any], ...]

    @property
    def exit_status(self) -> int:
        """As the scan's (0, 1, 2), judged on the new findings only."""
        from labgate.scan.report import status_of

        return status_of((Severity[f["severity"].upper()], Status(f["status"])) for f in self.new)

    def as_json(self, report: Path) -> dict[str, Any]:
        return {
            "report": str(report),
            "new": list(self.new),
            "changed": [{"before": b, "after": a} for b, a in self.changed],
            "resolved": list(self.resolved),
        }


def load_previous(path: Path) -> dict[str, Any]:
    """The report in `path`, checked against the report's schema; the problem named if not."""
    import jsonschema

    from labgate.scan.report import SCHEMA
    from labgate.scan.reportschema import REPORT

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PreviousReportError(f"--since {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PreviousReportError(f"--since {path}: not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise PreviousReportError(
            f"--since {path}: not a labgate scan report of this version (schema {found!r}, "
            f"expected {SCHEMA!r}; from `labgate scan --json`)"
        )
    problem = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(REPORT).iter_errors(document)
    )
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "the top level"
        raise PreviousReportError(f"--since {path}: at {where}: {problem.message}")
    return dict(document)


def compare(previous: dict[str, Any], current: dict[str, Any]) -> Changes:
    """The changes from the `previous` report to the `current` one (both as JSON)."""
    before = _by_key(previous["instruments"])
    after = _by_key(current["instruments"])
    scanned = {instrument["host"] for instrument in current["instruments"]}
    new = tuple(f for key, f in after.items() if key not in before)
    changed = tuple(
        (before[key], f)
        for key, f in after.items()
        if key in before
        and (before[key]["severity"], before[key]["status"]) != (f["severity"], f["status"])
    )
    resolved = tuple(f for key, f in before.items() if key not in after and f["host"] in scanned)
    return Changes(new=new, changed=changed, resolved=resolved)


def _by_key(instruments: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for instrument in instruments:
        for finding in instrument["findings"]:
            located = {"host": instrument["host"], **finding}
            found.setdefault((instrument["host"], finding["id"], finding["endpoint"]), located)
    return found


def render(changes: Changes, report: Path, console: Any) -> None:
    """The changes as three short lists on a Rich console."""
    from rich.text import Text

    console.print(Text(f"since {report}:", style="bold"))
    sections = (
        ("new", [(f, "") for f in changes.new]),
        ("changed", [(a, f" (was {b['severity']} {b['status']})") for b, a in changes.changed]),
        ("resolved", [(f, "") for f in changes.resolved]),
    )
    for name, entries in sections:
        console.print(Text(f"{name}: {len(entries)}", style="bold"))
        for finding, note in entries:
            console.print(
                Text(
                    f"  {finding['id']} {finding['severity']} {finding['status']} "
                    f"{finding['endpoint']}: {finding['title']}{note}"
                )
            )
