"""An outside peer's view of the same listeners: sslyze (which opens hundreds of connections to
learn it) finds the same protocols and, for TLS 1.2 and 1.0, the same suites as labgate's scan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from labgate.scan.hello import Version, suite_name

from .conftest import scan

sslyze = pytest.importorskip("sslyze")

COMMANDS = {
    "ssl_3_0_cipher_suites": Version.SSL3,
    "tls_1_0_cipher_suites": Version.TLS10,
    "tls_1_1_cipher_suites": Version.TLS11,
    "tls_1_2_cipher_suites": Version.TLS12,
    "tls_1_3_cipher_suites": Version.TLS13,
}


def _sslyze(port: int) -> dict[Version, set[str]]:
    location = sslyze.ServerNetworkLocation(hostname="localhost", port=port, ip_address="127.0.0.1")
    request = sslyze.ServerScanRequest(
        server_location=location, scan_commands={sslyze.ScanCommand(c) for c in COMMANDS}
    )
    scanner = sslyze.Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_result is not None, result.connectivity_error_trace
    found: dict[Version, set[str]] = {}
    for attribute, version in COMMANDS.items():
        attempt = getattr(result.scan_result, attribute)
        assert attempt.result is not None, attribute
        accepted = {s.cipher_suite.name for s in attempt.result.accepted_cipher_suites}
        if accepted:
            found[version] = accepted
    return found


@pytest.mark.slow
@pytest.mark.parametrize("listener", ["tls", "legacy"])
def test_sslyze_finds_what_labgate_found(simulator: Callable[..., Any], listener: str) -> None:
    with simulator() as sim:
        port = getattr(sim, listener)[1]
        ours = scan("127.0.0.1", port).ports[0]
        theirs = _sslyze(port)
    assert set(ours.accepted) == set(theirs)
    for version in (Version.TLS12, Version.TLS10):
        if version in theirs:
            assert ours.suites_complete[version]
            assert {suite_name(s) for s in ours.suites[version]} == theirs[version]
