"""The connection budget: every connection a scan opens goes through one `Budget`, which enforces
it and counts what was used.

The real instrument fails at about 30 connections, and the scanners people already have open
several at once, one per cipher suite. The defaults here are one connection at a time, at most
two new ones a second, at most 40 for the scan of one instrument; and once the endpoint stops
answering (a connect or a read that times out, a port that answered and now refuses) the scan
of that instrument stops: everything not yet probed is reported inconclusive, not guessed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from labgate.scan.errors import BudgetSpent, EndpointSilent

DEFAULT_CONCURRENT = 1
DEFAULT_PER_SECOND = 2.0
DEFAULT_TOTAL = 40
# Seconds to connect; a LAN instrument that has not answered a SYN in this long is not well.
CONNECT_SECONDS = 5.0
# Starts are spaced 1.1/per_second apart (see `Budget._take`).
SPACING = 1.1


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one instrument's scan may spend."""

    concurrent: int = DEFAULT_CONCURRENT
    per_second: float = DEFAULT_PER_SECOND
    total: int = DEFAULT_TOTAL

    def __post_init__(self) -> None:
        if self.concurrent != 1:
            # Probes run one after another; a budget that claims more would be a lie.
            raise ValueError(f"concurrent {self.concurrent}: this scanner opens 1 at a time")
        if not 0 < self.per_second <= 50:
            raise ValueError(f"per_second {self.per_second}: expected more than 0, at most 50")
        if not 1 <= self.total <= 1000:
            raise ValueError(f"total {self.total}: expected 1 to 1000 connections")


@dataclass(slots=True, kw_only=True)
class Usage:
    """What a scan used, for the report."""

    attempts: int = 0  # every connect, answered or not: each costs the instrument
    refused: int = 0  # of those, refused (a closed port)
    peak_open: int = 0
    started_at: list[float] = field(default_factory=list)  # time.monotonic() of each connect


class Budget:
    """Hands out connections to one instrument within `limits`; raises `BudgetSpent` when none
    are left and `EndpointSilent` once the endpoint has stopped answering."""

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self.usage = Usage()
        self.silent: str | None = None  # why the endpoint is taken to have stopped answering
        self._clock = clock
        self._sleep = sleep
        self._open = 0
        self._lock = threading.Lock()
        self._answered: set[int] = set()  # ports that accepted a connection before

    @property
    def left(self) -> int:
        return self.limits.total - self.usage.attempts

    def stop(self, why: str) -> None:
        """The endpoint stopped answering: no further connection is opened."""
        if self.silent is None:
            self.silent = why

    @contextlib.contextmanager
    def connect(
        self, host: str, port: int, *, timeout: float = CONNECT_SECONDS
    ) -> Iterator[socket.socket]:
        """A TCP connection to host:port, counted; closed on leaving the block.

        `ConnectionRefusedError` on a port never seen open is just a closed port (still counted:
        it cost the instrument a SYN); on a port that answered before, or a timeout anywhere,
        the endpoint is taken to have stopped answering.
        """
        self._take()
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except ConnectionRefusedError:
            self._release(refused=True)
            if port in self._answered:
                self.stop(f"port {port} answered earlier and now refuses connections")
            raise
        except TimeoutError:
            self._release(refused=False)
            self.stop(f"connecting to port {port} timed out after {timeout:g} s")
            raise EndpointSilent(self.silent or "") from None
        except OSError:
            self._release(refused=False)
            raise
        self._answered.add(port)
        try:
            sock.settimeout(timeout)
            yield sock
        finally:
            _close_gently(sock)
            self._release(refused=False)

    def _take(self) -> None:
        with self._lock:
            if self.silent is not None:
                raise EndpointSilent(self.silent)
            if self.left <= 0:
                raise BudgetSpent(f"the budget of {self.limits.total} connections is spent")
            if self._open >= self.limits.concurrent:
                raise RuntimeError("a probe opened a second connection while one was open")
            # At most `per_second` starts in any one second: never sooner than 1/rate after
            # the last start, with a tenth to spare: the instrument sees arrivals, not our starts,
            # and a late accept of one connection must not put three into its one second.
            if self.usage.started_at:
                wait = self.usage.started_at[-1] + SPACING / self.limits.per_second
                delay = wait - self._clock()
                if delay > 0:
                    self._sleep(delay)
            self._open += 1
            self.usage.attempts += 1
            self.usage.peak_open = max(self.usage.peak_open, self._open)
            self.usage.started_at.append(self._clock())

    def _release(self, *, refused: bool) -> None:
        with self._lock:
            self._open -= 1
            if refused:
                self.usage.refused += 1


# Seconds to wait for the peer's own close after ours: the next connection should not find the
# instrument still busy with this one.
CLOSE_WAIT_SECONDS = 1.0


def _close_gently(sock: socket.socket) -> None:
    """Half-close, wait briefly for the peer to close too, then close."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(CLOSE_WAIT_SECONDS)
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        while time.monotonic() < deadline and sock.recv(4096):
            pass
    with contextlib.suppress(OSError):
        sock.close()
