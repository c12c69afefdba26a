"""The connection budget, against real loopback sockets: the rate, the total, one at a time, and
the stop once an endpoint stops answering."""

from __future__ import annotations

import itertools
import socket

import pytest

from labgate.scan.budget import Budget, Limits
from labgate.scan.errors import BudgetSpent, EndpointSilent


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def listener() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield server
    server.close()


def test_connections_are_spaced_to_the_rate(listener: socket.socket) -> None:
    clock = FakeClock()
    budget = Budget(Limits(per_second=2.0, total=10), clock=clock, sleep=clock.sleep)
    port = listener.getsockname()[1]
    for _ in range(5):
        with budget.connect("127.0.0.1", port):
            listener.accept()[0].close()
    starts = budget.usage.started_at
    assert all(later - earlier >= 0.5 for earlier, later in itertools.pairwise(starts))
    assert all(starts[i + 2] - starts[i] > 1.0 for i in range(len(starts) - 2))
    assert budget.usage.attempts == 5


def test_the_total_is_never_exceeded(listener: socket.socket) -> None:
    budget = Budget(Limits(per_second=50.0, total=3))
    port = listener.getsockname()[1]
    for _ in range(3):
        with budget.connect("127.0.0.1", port):
            pass
    with pytest.raises(BudgetSpent, match="3 connections"), budget.connect("127.0.0.1", port):
        pass
    assert budget.usage.attempts == 3


def test_a_second_connection_while_one_is_open_is_refused(listener: socket.socket) -> None:
    budget = Budget(Limits(per_second=50.0, total=10))
    port = listener.getsockname()[1]
    with (
        budget.connect("127.0.0.1", port),
        pytest.raises(RuntimeError, match="second connection"),
        budget.connect("127.0.0.1", port),
    ):
        pass
    assert budget.usage.peak_open == 1


def test_a_port_that_stops_answering_stops_the_scan(listener: socket.socket) -> None:
    budget = Budget(Limits(per_second=50.0, total=10))
    port = listener.getsockname()[1]
    with budget.connect("127.0.0.1", port):
        pass
    listener.close()  # the instrument went away
    with pytest.raises(ConnectionRefusedError), budget.connect("127.0.0.1", port):
        pass
    assert budget.silent is not None and "now refuses" in budget.silent
    with pytest.raises(EndpointSilent), budget.connect("127.0.0.1", port):
        pass
    assert budget.usage.attempts == 2


def test_a_closed_port_is_not_a_silent_endpoint() -> None:
    spare = socket.create_server(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    budget = Budget(Limits(per_second=50.0, total=10))
    with pytest.raises(ConnectionRefusedError), budget.connect("127.0.0.1", port):
        pass
    assert budget.silent is None
    assert budget.usage.refused == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrent": 2}, "1 at a time"),
        ({"per_second": 0}, "per_second"),
        ({"per_second": 500}, "per_second"),
        ({"total": 0}, "total"),
    ],
)
def test_limits_that_cannot_be_kept_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**options)  # type: ignore[arg-type]
