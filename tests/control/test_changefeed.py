"""The long poll's waiting room: one read of the database per interval however many gateways
wait, no connection held while they wait, a bound per gateway, and a change seen by every waiter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import update

from labgate.control.changefeed import ChangeFeed
from labgate.control.database import make_engine
from labgate.control.errors import Throttled
from labgate.control.runtime import _read_changes
from labgate.control.tables import Counter

INTERVAL = 0.05


def test_fifty_waiting_gateways_cost_one_query_per_interval_and_hold_no_connection(
    settings: Any,
) -> None:
    engine = make_engine(settings.resolved_database_url, pool_size=4)
    reads = 0
    checked_out: list[int] = []

    def read() -> int:
        nonlocal reads
        reads += 1
        return _read_changes(engine)

    feed = ChangeFeed(read, interval=INTERVAL, per_key=1)

    async def scenario() -> list[bool]:
        start = _read_changes(engine)
        waiters = [
            asyncio.create_task(feed.wait_beyond(start, timeout=20, key=f"labgate:gateway:g{i}"))
            for i in range(50)
        ]
        # Sampled over the wait: the one shared read may be running (one connection, for the
        # moment of one query), but waiters themselves never hold one.
        for _ in range(10):
            await asyncio.sleep(0.05)
            checked_out.append(engine.pool.checkedout())  # type: ignore[attr-defined]
        with engine.begin() as connection:
            connection.execute(
                update(Counter).where(Counter.name == "changes").values(value=Counter.value + 1)
            )
        return await asyncio.wait_for(asyncio.gather(*waiters), timeout=20)

    try:
        woken = asyncio.run(scenario())
    finally:
        engine.dispose()
    assert woken == [True] * 50
    assert max(checked_out) <= 1, checked_out
    # About one read per interval over the ~0.5 s: far fewer than one per waiter per interval.
    assert reads < 0.5 / INTERVAL * 4 + 10


def test_a_gateway_beyond_its_share_of_waits_is_refused() -> None:
    feed = ChangeFeed(lambda: 0, interval=INTERVAL, per_key=2)

    async def scenario() -> None:
        held = [
            asyncio.create_task(feed.wait_beyond(0, timeout=1, key="labgate:gateway:a"))
            for _ in range(2)
        ]
        await asyncio.sleep(0.1)
        with pytest.raises(Throttled):
            await feed.wait_beyond(0, timeout=1, key="labgate:gateway:a")
        # Another gateway still gets its turn.
        assert await feed.wait_beyond(0, timeout=0.2, key="labgate:gateway:b") is False
        assert await asyncio.gather(*held) == [False, False]
        assert feed.waiting == 0

    asyncio.run(scenario())


def test_a_failing_database_ends_the_wait_as_nothing_new_and_the_next_read_recovers() -> None:
    values = iter([RuntimeError("database gone"), 5, 5, 5])

    def read() -> int:
        value = next(values, 5)
        if isinstance(value, Exception):
            raise value
        return value

    feed = ChangeFeed(read, interval=INTERVAL, per_key=4)

    async def scenario() -> tuple[bool, bool]:
        first = await feed.wait_beyond(5, timeout=0.3, key="k")
        second = await feed.wait_beyond(4, timeout=2, key="k")
        return first, second

    assert asyncio.run(scenario()) == (False, True)
