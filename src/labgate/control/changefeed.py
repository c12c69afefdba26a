"""The bundle long poll's waiting room: gateways wait here for the `changes` counter to pass the
number their last bundle carried.

Theory of operation. The counter lives in the database and grows in the same transaction as
every change of who may do what, on whichever replica made it. While at least one gateway waits
on this replica, one task reads the counter every `interval` seconds (one small SELECT, on a
connection taken for that statement only) and wakes every waiter when it moved; when nobody
waits, nothing is read. So the cost is one query per interval per replica, however many gateways
wait, and no waiting request holds a connection or a transaction.

Nothing here is needed for correctness: the value kept in memory is only ever an old reading of a
counter that only grows, so a waiter answered "changed" was right, and a waiter that misses a
change (the database briefly unreachable) is answered "nothing new" at the end of its wait and
simply asks again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from labgate.control.errors import Throttled
from labgate.pki.inventory import Inventory

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = logging.getLogger("labgate.control")


class ChangeFeed:
    def __init__(self, read: Callable[[], int], *, interval: float, per_key: int) -> None:
        self._read = read
        self._interval = interval
        self._per_key = per_key
        self._waiting: collections.Counter[str] = collections.Counter()
        self._value: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._moved: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return sum(self._waiting.values())

    async def wait_beyond(self, after: int, *, timeout: float, key: str) -> bool:
        """True as soon as the counter is above `after`; False when `timeout` passes first.

        `key` names the waiter (a gateway): at most `per_key` waits per key at once, so one
        gateway (or a stolen certificate) cannot fill the room.
        """
        if self._waiting[key] >= self._per_key:
            raise Throttled(
                f"{key} already holds {self._per_key} bundle long polls open", retry_after=1.0
            )
        loop = asyncio.get_running_loop()
        self._waiting[key] += 1
        try:
            self._start(loop)
            deadline = loop.time() + timeout
            while True:
                if self._value is not None and self._value > after:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                moved = self._moved
                assert moved is not None
                try:
                    async with asyncio.timeout(remaining):
                        await moved.wait()
                except TimeoutError:
                    return self._value is not None and self._value > after
        finally:
            self._waiting[key] -= 1
            if self._waiting[key] <= 0:
                del self._waiting[key]

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:  # first use, or a new event loop (tests start several)
            self._loop, self._moved, self._task = loop, asyncio.Event(), None
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._poll())

    async def _poll(self) -> None:
        while self.waiting:
            try:
                value = await asyncio.to_thread(self._read)
            except Exception as error:  # the waiters time out and ask again; say why once a round
                log.warning("reading the change counter failed: %s", type(error).__name__)
            else:
                if self._value is None or value > self._value:
                    self._value = value
                    moved, self._moved = self._moved, asyncio.Event()
                    if moved is not None:
                        moved.set()
            await asyncio.sleep(self._interval)


class InventoryWatch:
    """Turns revocations made outside the server (`labgate ca revoke`, which writes only the
    CA's inventory file) into a step of the `changes` counter, so waiting gateways hear of them
    as they hear of the API's own.

    The poller calls `moved()` each round: a `stat` of the inventory file and its write-ahead
    log, and only when those changed, a count of the revocations it lists. The first look (at
    server start) sets the baseline.
    """

    def __init__(self, inventory: Inventory, path: Path) -> None:
        self._inventory = inventory
        self._files = (path, path.with_name(path.name + "-wal"))
        self._signature = self._stat()
        self._revoked = self._count()

    def moved(self) -> bool:
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature
        count = self._count()
        moved, self._revoked = count != self._revoked, count
        return moved

    def _stat(self) -> tuple[tuple[int, int, int] | None, ...]:
        signatures: list[tuple[int, int, int] | None] = []
        for file in self._files:
            try:
                st = os.stat(file)
            except OSError:
                signatures.append(None)
            else:
                signatures.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(signatures)

    def _count(self) -> int:
        return sum(1 for _ in self._inventory.revocations(unexpired_at=EPOCH))
