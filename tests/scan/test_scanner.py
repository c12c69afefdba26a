"""A full scan of the simulator's three listeners with the default budget, counted on the
simulator's side: never more than one connection at a time, never more than two new ones in a
second, at most 40, and done in under a minute."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from labgate.scan.budget import Limits
from labgate.scan.hello import Version

from .conftest import ids, scan


@pytest.mark.slow
def test_a_full_scan_keeps_the_budget_as_the_instrument_counts_it(
    simulator: Callable[..., Any],
) -> None:
    with simulator() as sim:
        before = sim.connections.accepted
        started = time.monotonic()
        result = scan("127.0.0.1", sim.plain[1], sim.tls[1], sim.legacy[1], limits=Limits())
        elapsed = time.monotonic() - started
        time.sleep(0.3)  # the last session's end reaches the simulator's count
        gate = sim.connections
        seen = gate.accepted - before
        arrivals = list(gate.arrivals)[-seen:]
        peak = gate.peak
    assert elapsed < 60
    assert seen == result.usage.attempts <= 40
    assert peak == 1
    # Two new connections at most in any one second (a little slack for the simulator's loop).
    assert all(arrivals[i + 2] - arrivals[i] >= 0.9 for i in range(len(arrivals) - 2))
    assert result.stopped is None
    # And it learnt everything: every protocol on both TLS ports, every suite enumerated.
    plain, tls, legacy = result.ports
    assert plain.service == "scpi" and plain.scpi is not None
    assert plain.scpi.banner.product == "QuantStudio3_5"
    assert plain.scpi.passwords_checked
    assert set(tls.accepted) == {Version.TLS12, Version.TLS13}
    assert set(legacy.accepted) == {Version.SSL3, Version.TLS10}
    assert tls.suites_complete[Version.TLS12]
    assert legacy.suites_complete[Version.TLS10] and legacy.suites_complete[Version.SSL3]
    assert {"LG-TLS-001", "LG-TLS-002", "LG-TLS-004"} <= ids(result, sim.legacy[1])
    assert ids(result, status="inconclusive") == set()


def test_a_small_budget_stops_the_scan_and_says_what_is_unknown(
    simulator: Callable[..., Any],
) -> None:
    with simulator() as sim:
        before = sim.connections.accepted
        result = scan(
            "127.0.0.1", sim.plain[1], sim.legacy[1], limits=Limits(per_second=20, total=4)
        )
        time.sleep(0.3)
        seen = sim.connections.accepted - before
    assert seen == result.usage.attempts == 4
    legacy = result.ports[1]
    # The matrix got as far as the budget allowed; the rest is inconclusive, not refused.
    assert any(type(answer).__name__ == "Inconclusive" for answer in legacy.versions.values())
    assert "LG-TLS-001" in ids(result, sim.legacy[1], status="inconclusive") | ids(
        result, sim.legacy[1]
    )


@pytest.mark.slow
def test_an_endpoint_that_stops_answering_ends_the_scan(simulator: Callable[..., Any]) -> None:
    import socket

    # Accepts (the kernel's backlog) and never says a word: a hung instrument.
    silent = socket.create_server(("127.0.0.1", 0), backlog=8)
    try:
        port = silent.getsockname()[1]
        result = scan("127.0.0.1", port, port, limits=Limits(per_second=20, total=40))
    finally:
        silent.close()
    assert result.usage.attempts == 1
    assert result.stopped is not None and "no answer" in result.stopped
    assert "LG-SCAN-001" in ids(result, status="inconclusive")
    assert ids(result) == set()  # nothing guessed from silence
