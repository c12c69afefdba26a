"""`labgate scan` against the gateway and, with the gateway's configuration, against the
instruments behind it: the gateway passes, an instrument reachable around it does not, and a key
that is not the pinned one is named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.scan.budget import Limits
from labgate.scan.hello import Version
from labgate.scan.profiles import INTERMEDIATE_SUITES
from labgate.scan.report import exit_status
from labgate.scan.scanner import known_from_gateway, scan_instrument
from labgate.scan.targets import Target

from .conftest import Pki, write_config

QUICK = Limits(per_second=20.0, total=40)


def test_the_gateway_passes_the_scan(gateway: Any, pki: Pki) -> None:
    host, port = gateway.address("qs5-tls")
    result = scan_instrument(Target(host=host, ports=(port,)), limits=QUICK)
    facts = result.ports[0]
    assert set(facts.accepted) == {Version.TLS12, Version.TLS13}, facts.versions
    graded = [s for s in facts.suites[Version.TLS12]]
    assert graded and facts.suites_complete[Version.TLS12]
    from labgate.scan.hello import suite_name

    assert {suite_name(s) for s in graded} <= INTERMEDIATE_SUITES
    # No SCPI without a client certificate, so no way around the gateway's checks.
    assert facts.scpi is None
    assert facts.scpi_error is not None and "client certificate" in facts.scpi_error
    found = {f.id for f in result.findings}
    assert not found & {"LG-NET-001", "LG-SCPI-001", "LG-TLS-001", "LG-TLS-002", "LG-TLS-003",
                        "LG-TLS-004", "LG-CERT-001", "LG-CERT-003"}  # fmt: skip
    assert exit_status([result]) == 0


def test_an_instrument_reachable_around_the_gateway_is_named(
    tmp_path: Path, pki: Pki, simulator: Any
) -> None:
    config = write_config(tmp_path, pki, simulator)
    host, port = simulator.tls
    result = CliRunner().invoke(
        app, ["scan", f"{host}:{port}", "--config", str(config), "--json", "--rate", "20"]
    )
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    findings = {f["id"]: f for f in report["instruments"][0]["findings"]}
    assert "'qs5-tls'" in findings["LG-NET-001"]["evidence"]
    assert "LG-CERT-004" not in findings  # the key is the pinned one
    assert 'name = "qs5-tls"' in findings["LG-NET-001"]["fix"]


def test_a_key_other_than_the_pinned_one_is_found(
    tmp_path: Path, pki: Pki, simulator: Any, config_writer: Callable[..., Path]
) -> None:
    other = "sha256/" + "A" * 43 + "="
    config = write_config(tmp_path, pki, simulator, upstream_pin=other)
    known = known_from_gateway(config)
    host, port = simulator.legacy
    result = scan_instrument(Target(host=host, ports=(port,)), limits=QUICK, known=known)
    (finding,) = [f for f in result.findings if f.id == "LG-CERT-004"]
    assert other in finding.evidence and "'qs5-legacy'" in finding.evidence
    assert result.ports[0].certificate is not None
    assert f'upstream_pin = "{result.ports[0].certificate.pin}"' in finding.fix
