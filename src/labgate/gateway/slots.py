"""How many upstream sessions an instrument may have at once, and who waits for one.

The real instrument fails at about 30 concurrent connections, so each instrument has `max_upstream`
slots. A client beyond them waits in a queue of bounded length for at most `upstream_wait` seconds;
a full queue or a wait that runs out is a clear `InstrumentBusy`, never an unbounded pile-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from labgate.gateway.errors import InstrumentBusy


class UpstreamSlots:
    def __init__(self, *, instrument: str, size: int, queue: int, wait: float) -> None:
        self._instrument = instrument
        self._size = size
        self._queue = queue
        self._wait = wait
        self._free = asyncio.Semaphore(size)
        self._waiting = 0
        self.in_use = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
            self._free.release()

    async def _acquire(self) -> None:
        if self._free.locked() and self._waiting >= self._queue:
            raise InstrumentBusy(
                f"instrument {self._instrument!r} is busy: all {self._size} upstream sessions "
                f"are in use and {self._waiting} clients are already waiting"
            )
        self._waiting += 1
        try:
            async with asyncio.timeout(self._wait):
                await self._free.acquire()
        except TimeoutError as exc:
            raise InstrumentBusy(
                f"instrument {self._instrument!r} is busy: all {self._size} upstream sessions "
                f"stayed in use for {self._wait:g} s"
            ) from exc
        finally:
            self._waiting -= 1
