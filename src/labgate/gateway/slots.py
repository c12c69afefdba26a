"""How many upstream connections an instrument may have at once, who waits for one, and the
warm connections kept for the next session.

The real instrument fails at about 30 concurrent connections, so each instrument has `max_upstream`
slots. A client beyond them waits in a queue of bounded length for at most `upstream_wait` seconds;
a full queue or a wait that runs out is a clear `InstrumentBusy`, never an unbounded pile-up.

A slot is held by every connection the instrument has from the gateway: one a session uses, one
being opened or closed, and a warm one waiting in the pool. So `max_upstream` bounds them all, and
a warm connection is simply a slot that comes with a logged-in connection. Up to `upstream_idle`
of them wait for the next session; each is closed after `upstream_idle_timeout` seconds unused.
Whether a connection may go back at all is the session's judgement (see `Session`); whether it
may be lent again is checked when it is taken (`check`: the instrument has neither hung up nor sent
anything meanwhile), and the next session sets its level before its first command (see
`SessionFilter.upstream_level`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from labgate.gateway.errors import InstrumentBusy
from labgate.gateway.upstream import UpstreamConnection

Check = Callable[[UpstreamConnection], bool]


@dataclass(slots=True, kw_only=True)
class _Warm:
    upstream: UpstreamConnection
    expiry: asyncio.TimerHandle


class UpstreamSlots:
    def __init__(
        self,
        *,
        instrument: str,
        size: int,
        queue: int,
        wait: float,
        idle: int = 0,
        idle_timeout: float = 30.0,
    ) -> None:
        self._instrument = instrument
        self._size = size
        self._queue = queue
        self._wait = wait
        self._idle_max = idle
        self._idle_timeout = idle_timeout
        self._held = 0  # connections the instrument has from us, warm ones included
        self._warm: deque[_Warm] = deque()
        self._changed = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self.in_use = 0  # held by sessions
        self.reused = 0  # warm connections lent to a session

    @property
    def held(self) -> int:
        return self._held

    @property
    def warm(self) -> int:
        return len(self._warm)

    async def take(self, check: Check) -> UpstreamConnection | None:
        """A warm connection that passed `check` (its slot comes with it), or None: a slot is
        now reserved for a new connection. Give either back with `give_back`."""
        if not self._warm and self._held >= self._size and self._waiting >= self._queue:
            raise InstrumentBusy(
                f"instrument {self._instrument!r} is busy: all {self._size} upstream sessions "
                f"are in use and {self._waiting} clients are already waiting"
            )
        lent = self._lend(check)  # the usual case: no wait, no timer
        if lent is not False:
            return lent
        self._waiting += 1
        try:
            async with asyncio.timeout(self._wait):
                while (lent := self._lend(check)) is False:
                    self._changed.clear()
                    await self._changed.wait()
                return lent
        except TimeoutError as exc:
            raise InstrumentBusy(
                f"instrument {self._instrument!r} is busy: all {self._size} upstream sessions "
                f"stayed in use for {self._wait:g} s"
            ) from exc
        finally:
            self._waiting -= 1

    def _lend(self, check: Check) -> UpstreamConnection | Literal[False] | None:
        """A warm connection that passes `check`, None for a slot reserved for a new one, or
        False when neither is free. Warm ones that fail the check are closed on the way."""
        while self._warm:
            warm = self._warm.pop()  # the most recent: least likely to have gone stale
            warm.expiry.cancel()
            self.in_use += 1
            if check(warm.upstream):
                self.reused += 1
                return warm.upstream
            self._close_soon(warm.upstream)
        if self._held < self._size:
            self._held += 1
            self.in_use += 1
            return None
        return False

    async def give_back(self, upstream: UpstreamConnection | None, *, keep: bool) -> None:
        """End a session's hold: keep the connection warm, or close it (waiting until the
        instrument has hung up, so its count has dropped) and free the slot."""
        self.in_use -= 1
        if upstream is not None and keep and len(self._warm) < self._idle_max:
            expiry = asyncio.get_running_loop().call_later(
                self._idle_timeout, self._expire, upstream
            )
            self._warm.append(_Warm(upstream=upstream, expiry=expiry))
            self._changed.set()
            return
        try:
            if upstream is not None:
                await upstream.close()
        finally:
            self._held -= 1
            self._changed.set()

    async def aclose(self) -> None:
        """Close every warm connection (the gateway is stopping)."""
        while self._warm:
            warm = self._warm.pop()
            warm.expiry.cancel()
            self.in_use += 1
            await self.give_back(warm.upstream, keep=False)
        if self._closing:
            await asyncio.wait(self._closing, timeout=5)

    def _expire(self, upstream: UpstreamConnection) -> None:
        for warm in self._warm:
            if warm.upstream is upstream:
                self._warm.remove(warm)
                self.in_use += 1  # give_back counts it out again
                self._close_soon(upstream)
                return

    def _close_soon(self, upstream: UpstreamConnection) -> None:
        """Close a connection held as in use, in a task of its own (from a timer, or while the
        caller is being cancelled)."""
        task = asyncio.get_running_loop().create_task(self.give_back(upstream, keep=False))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
