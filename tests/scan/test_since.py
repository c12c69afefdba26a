"""`labgate scan --since FILE` and `--json-schema`: real scans of the simulator, compared with a
previous report (the same one, and doctored copies of it), and validated against the schema."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.scpi.access import AccessLevel


def run_scan(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["scan", *args, "--rate", "20"])
    return result.exit_code, result.output


def schema() -> dict[str, Any]:
    result = CliRunner().invoke(app, ["scan", "--json-schema"])
    assert result.exit_code == 0, result.output
    printed: dict[str, Any] = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(printed)
    return printed


def test_real_scan_output_validates_against_the_published_schema(
    simulator: Callable[..., Any],
) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    with simulator(access_limit=AccessLevel.CONTROLLER, legacy_port=None) as sim:
        ports = [sim.plain[1], sim.tls[1]]  # SCPI in plaintext and over TLS
        status, output = run_scan(*(f"127.0.0.1:{p}" for p in ports), "--json")
    assert status == 2, output
    report = json.loads(output)
    errors = [e.message for e in validator.iter_errors(report)]
    assert errors == []
    ports_seen = report["instruments"][0]["ports"]
    assert any(p["certificate"] for p in ports_seen) and any(p["banner"] for p in ports_seen)
    # The schema can fail: an unknown field, a severity it does not know, a missing part.
    for spoil in (
        lambda r: r["instruments"][0].update(extra=1),
        lambda r: r["instruments"][0]["findings"][0].update(severity="dire"),
        lambda r: r["instruments"][0]["ports"][0].pop("state"),
        lambda r: r.update(schema="labgate-scan/0"),
    ):
        spoilt = copy.deepcopy(report)
        spoil(spoilt)
        assert list(validator.iter_errors(spoilt)), spoil


def test_since_shows_only_what_changed_and_exits_by_the_new_findings(
    simulator: Callable[..., Any], tmp_path: Path
) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    with simulator(access_limit=AccessLevel.CONTROLLER, tls_port=None, legacy_port=None) as sim:
        target = f"127.0.0.1:{sim.plain[1]}"
        status, output = run_scan(target, "--json")
        assert status == 2, output  # LG-SCPI-002 critical, and more
        baseline = json.loads(output)
        before = tmp_path / "before.json"
        before.write_text(output)

        # Nothing new since the same scan: exit 0 although the findings are critical.
        status, output = run_scan(target, "--since", str(before))
        assert status == 0, output
        assert "new: 0" in output and "changed: 0" in output and "resolved: 0" in output
        status, output = run_scan(target, "--json", "--since", str(before))
        assert status == 0, output
        again = json.loads(output)
        assert list(validator.iter_errors(again)) == []
        assert again["since"] == {"report": str(before), "new": [], "changed": [], "resolved": []}
        # The comparison costs the instruments no connection more than the scan itself.
        assert again["instruments"][0]["budget"] == baseline["instruments"][0]["budget"]

        # A doctored baseline: the critical finding missing (so new), another at a different
        # severity (changed), one this scan did not find (resolved), and one of a host not
        # scanned now (not resolved: that host was not looked at).
        doctored = copy.deepcopy(baseline)
        findings = doctored["instruments"][0]["findings"]
        critical = next(f for f in findings if f["id"] == "LG-SCPI-002")
        findings.remove(critical)
        other = next(f for f in findings if f["severity"] != "low")
        other["severity"] = "low"
        gone = {**other, "id": "LG-TLS-001", "title": "SSLv3 accepted", "severity": "high"}
        findings.append(gone)
        elsewhere = copy.deepcopy(doctored["instruments"][0])
        elsewhere["host"] = "192.0.2.10"
        doctored["instruments"].append(elsewhere)
        assert list(validator.iter_errors(doctored)) == []
        old = tmp_path / "old.json"
        old.write_text(json.dumps(doctored))
        status, output = run_scan(target, "--json", "--since", str(old))
    assert status == 2, output  # by the new critical one
    since = json.loads(output)["since"]
    assert [(f["id"], f["severity"]) for f in since["new"]] == [("LG-SCPI-002", "critical")]
    assert [(c["before"]["severity"], c["after"]["id"]) for c in since["changed"]] == [
        ("low", other["id"])
    ]
    assert [(f["host"], f["id"]) for f in since["resolved"]] == [("127.0.0.1", "LG-TLS-001")]


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("{not json", "not JSON"),
        ('{"schema": "something-else/1"}', "not a labgate scan report"),
        ('{"schema": "labgate-scan/1", "exit_status": 0}', "'instruments' is a required"),
        (
            '{"schema": "labgate-scan/1", "exit_status": 0, "instruments": [{"host": 1}]}',
            "at instruments/0",
        ),
    ],
)
def test_a_bad_since_file_is_named_before_any_connection(
    content: str, named: str, tmp_path: Path
) -> None:
    previous = tmp_path / "previous.json"
    previous.write_text(content)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = CliRunner().invoke(app, ["scan", f"127.0.0.1:{port}", "--since", str(previous)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: --since ") and named in result.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()  # the scan never connected
    missing = CliRunner().invoke(app, ["scan", "127.0.0.1:1", "--since", str(tmp_path / "no")])
    assert missing.exit_code == 2 and "No such file" in missing.stderr
