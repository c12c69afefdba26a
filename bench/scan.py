"""Benchmark: what `labgate scan` costs an instrument, against sslyze on the same simulator.

One run starts the labgate simulator (plain, TLS and SSLv3/TLS 1.0 listeners on free loopback
ports) in this process, so the connections can be counted where they land: on the simulator,
which counts every TCP connection it accepts (a TLS one before its handshake), the most open at
once, and when each arrived. Then, one after another:

- `labgate scan` of all three listeners with its default budget (1 at a time, 2/s, 40 at most);
- sslyze (its Python API) on the TLS listener: the comparable checks (every protocol's cipher
  suites and the certificate), with its default concurrency (5 per server) and with 1;
- sslyze's comparable checks on the SSLv3 listener too, where it can (its own legacy OpenSSL).

For each it prints the wall time, the connections the simulator accepted, the most open at once,
and the most that arrived within any one second; and which protocols each found, as a cross-check
of labgate's matrix. Loopback only; every loop is bounded by the tools' own scans.

Usage: python bench/scan.py [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from labgate.instrument import SimulatorConfig, run_in_thread
from labgate.instrument.simulator import RunningSimulator
from labgate.scan.budget import Limits
from labgate.scan.scanner import scan_instrument
from labgate.scan.targets import Target
from labgate.scpi.access import AccessLevel


@contextlib.contextmanager
def counted(sim: RunningSimulator) -> Iterator[dict[str, Any]]:
    """Connections the simulator accepts inside the block: count, peak open, busiest second."""
    gate = sim.connections
    before = gate.accepted
    gate.peak = gate.active  # the peak from here on
    figures: dict[str, Any] = {}
    started = time.monotonic()
    yield figures
    figures["seconds"] = round(time.monotonic() - started, 2)
    time.sleep(0.3)  # the last connections' ends reach the count
    count = gate.accepted - before
    arrivals = list(gate.arrivals)[-count:] if count else []
    busiest = 0
    for i, first in enumerate(arrivals):
        busiest = max(busiest, sum(1 for later in arrivals[i:] if later - first < 1.0))
    figures.update(connections=count, peak_open=gate.peak, busiest_second=busiest)


def labgate_scan(sim: RunningSimulator) -> tuple[dict[str, Any], dict[str, list[str]]]:
    assert sim.plain and sim.tls and sim.legacy
    target = Target(host="127.0.0.1", ports=(sim.plain[1], sim.tls[1], sim.legacy[1]))
    with counted(sim) as figures:
        result = scan_instrument(target, limits=Limits())
    protocols = {
        "tls": sorted(v.value for v in result.ports[1].accepted),
        "legacy": sorted(v.value for v in result.ports[2].accepted),
    }
    figures["scanner_says"] = result.usage.attempts
    figures["findings"] = len(result.findings)
    return figures, protocols


def sslyze_scan(
    sim: RunningSimulator, port: int, concurrency: int | None
) -> tuple[dict[str, Any], list[str]]:
    from sslyze import (
        ScanCommand,
        Scanner,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )

    commands = {
        ScanCommand.CERTIFICATE_INFO,
        ScanCommand.SSL_2_0_CIPHER_SUITES,
        ScanCommand.SSL_3_0_CIPHER_SUITES,
        ScanCommand.TLS_1_0_CIPHER_SUITES,
        ScanCommand.TLS_1_1_CIPHER_SUITES,
        ScanCommand.TLS_1_2_CIPHER_SUITES,
        ScanCommand.TLS_1_3_CIPHER_SUITES,
    }
    names = {
        "ssl_3_0_cipher_suites": "SSLv3",
        "tls_1_0_cipher_suites": "TLSv1.0",
        "tls_1_1_cipher_suites": "TLSv1.1",
        "tls_1_2_cipher_suites": "TLSv1.2",
        "tls_1_3_cipher_suites": "TLSv1.3",
    }
    location = ServerNetworkLocation(hostname="localhost", port=port, ip_address="127.0.0.1")
    scanner = Scanner(per_server_concurrent_connections_limit=concurrency)
    with counted(sim) as figures:
        scanner.queue_scans([ServerScanRequest(server_location=location, scan_commands=commands)])
        results = list(scanner.get_results())
    found: list[str] = []
    for result in results:
        if result.scan_status is not ServerScanStatusEnum.COMPLETED or result.scan_result is None:
            figures["error"] = str(result.connectivity_error_trace or result.scan_status)
            continue
        for attribute, label in names.items():
            attempt = getattr(result.scan_result, attribute)
            if attempt.result is not None and attempt.result.accepted_cipher_suites:
                found.append(label)
    return figures, sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as state:
        config = SimulatorConfig(
            state_dir=Path(state), plain_port=0, tls_port=0, legacy_port=0,
            passwords={"bench-strong-secret-7f3a91": AccessLevel.FULL},
            access_limit=AccessLevel.GUEST, max_connections=64,
        )  # fmt: skip
        with run_in_thread(config) as sim:
            assert sim.tls and sim.legacy
            rows["labgate scan, 3 listeners"], ours = labgate_scan(sim)
            runs: list[tuple[str, int, int | None]] = [
                ("sslyze, TLS listener, default concurrency", sim.tls[1], None),
                ("sslyze, TLS listener, 1 at a time", sim.tls[1], 1),
                ("sslyze, SSLv3 listener, default concurrency", sim.legacy[1], None),
            ]
            theirs: dict[str, list[str]] = {}
            for label, port, concurrency in runs:
                try:
                    rows[label], theirs[label] = sslyze_scan(sim, port, concurrency)
                except ImportError as exc:
                    rows[label] = {"error": f"sslyze not installed ({exc})"}
    _print(rows)
    print("\nprotocols accepted (cross-check)")
    print(f"  labgate, TLS listener:   {', '.join(ours['tls'])}")
    print(f"  sslyze,  TLS listener:   {', '.join(theirs.get(runs[0][0], [])) or '-'}")
    print(f"  labgate, SSLv3 listener: {', '.join(ours['legacy'])}")
    print(f"  sslyze,  SSLv3 listener: {', '.join(theirs.get(runs[2][0], [])) or '-'}")
    if options.json:
        options.json.write_text(json.dumps({"rows": rows, "labgate": ours, "sslyze": theirs}))
    return 0


def _print(rows: dict[str, dict[str, Any]]) -> None:
    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("seconds", lambda r: str(r.get("seconds", "-"))),
        ("connections", lambda r: str(r.get("connections", "-"))),
        ("peak open", lambda r: str(r.get("peak_open", "-"))),
        ("most in 1 s", lambda r: str(r.get("busiest_second", "-"))),
    ]
    width = max(len(label) for label in rows) + 2
    print("".ljust(width) + "".join(name.rjust(14) for name, _ in columns))
    for label, row in rows.items():
        if "error" in row and "seconds" not in row:
            print(label.ljust(width) + "  " + row["error"])
            continue
        print(label.ljust(width) + "".join(show(row).rjust(14) for _, show in columns))


if __name__ == "__main__":
    raise SystemExit(main())
