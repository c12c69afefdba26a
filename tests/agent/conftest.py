"""Fixtures for the agent: a local page on a real loopback listener, and a real control server."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labgate.agent.locality import parse_networks
from labgate.agent.localpage import Listener, LocalPage
from labgate.agent.secret import LocalSecret, new_instance_id
from labgate.agent.window import Window

SERVER_ORIGIN = "https://127.0.0.1:8443"


@dataclass
class RunningPage:
    page: LocalPage
    address: str
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return f"http://{self.address}/link?instance_id={self.page.instance_id}"


class LoopThread:
    """An asyncio loop on a thread, so blocking test clients can talk to async servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    running = LoopThread()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def local_page(loop_thread: LoopThread) -> Iterator[Any]:
    """`local_page(networks=..., announcements=...)`: a LocalPage served on 127.0.0.1."""
    listeners: list[Listener] = []

    def start(networks: str = "127.0.0.1/32", announcements: int = 10) -> RunningPage:
        page = LocalPage(
            instance_id=new_instance_id(),
            secret=LocalSecret(),
            window=Window(announcements=announcements),
            networks=parse_networks(networks.split(",")),
            server_origin=SERVER_ORIGIN,
        )
        listener = Listener(page, "127.0.0.1", 0)
        address = loop_thread.run(listener.start())
        listeners.append(listener)
        return RunningPage(page=page, address=address, loop=loop_thread.loop)

    yield start
    for listener in listeners:
        loop_thread.run(listener.close())


@pytest.fixture
def agent_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="labgate.agent")
    return caplog


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent"
