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
        async def cancel_rest() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(10)
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


# --- a real control server, and the agent as a real process -------------------------------
STRONG_PASSWORD = "violet staple hammock orbit quietly"
FAST_ARGON2 = {"argon2_memory_kib": 64, "argon2_time_cost": 1, "argon2_parallelism": 1}


@dataclass
class Server:
    url: str
    root: Path
    data_dir: Path

    def client(self) -> Any:
        import ssl

        import httpx

        context = ssl.create_default_context(cafile=str(self.root))
        return httpx.Client(base_url=self.url, verify=context, timeout=30)

    def admin(self) -> dict[str, str]:
        """A full admin session's headers (the first call changes the one-time password)."""
        from labgate.control.layout import ADMIN_PASSWORD_FILE

        with self.client() as http:
            login = http.post(
                "/api/v1/auth/login", json={"username": "admin", "password": STRONG_PASSWORD}
            )
            if login.status_code != 200:
                one_time = (self.data_dir / ADMIN_PASSWORD_FILE).read_text().strip()
                first = http.post(
                    "/api/v1/auth/login", json={"username": "admin", "password": one_time}
                )
                assert first.status_code == 200, first.text
                login = http.post(
                    "/api/v1/auth/password",
                    headers={"Authorization": f"Bearer {first.json()['access_token']}"},
                    json={"old_password": one_time, "new_password": STRONG_PASSWORD},
                )
            assert login.status_code == 200, login.text
            return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    from labgate.control.http.serving import run_in_thread
    from labgate.control.provisioning import initialise
    from labgate.control.settings import ControlSettings

    data = tmp_path / "server"
    settings = ControlSettings.load(data, device_code_interval_seconds=1, **FAST_ARGON2)
    initialise(settings, config={})
    with run_in_thread(settings) as running:
        yield Server(url=running.url, root=running.ca_root, data_dir=data)


class AgentProcess:
    """`labgate agent run` as a subprocess; its ready line parsed, its stderr kept."""

    def __init__(self, server: Server, data: Path, *extra: str) -> None:
        import json
        import os
        import subprocess
        import sys

        self.data = data
        self.stderr_path = data.parent / f"{data.name}.stderr"
        self._stderr = self.stderr_path.open("wb")
        command = [
            sys.executable,
            "-m",
            "labgate",
            "agent",
            "run",
            "--server",
            server.url,
            "--server-ca",
            str(server.root),
            "--data",
            str(data),
            "--local-listen",
            "127.0.0.1:0",
            "--model",
            "qPCR-sim",
            "--serial",
            "SN-0001",
            *extra,
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._stderr, env=dict(os.environ)
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(10)
            raise AssertionError(f"agent did not start: {self.stderr()}")
        self.ready: dict[str, Any] = json.loads(line)

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        import json

        return dict(json.loads((self.data / "status.json").read_text()))

    def wait_for(self, state: str, timeout: float = 60.0) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"agent exited {self.process.returncode}: {self.stderr()}")
            current = self.status()
            if current.get("state") == state:
                return current
            time.sleep(0.2)
        raise AssertionError(f"agent not {state} after {timeout} s: {self.stderr()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait(10)
        if not self._stderr.closed:
            self._stderr.close()


@pytest.fixture
def start_agent(server: Server, tmp_path: Path) -> Iterator[Any]:
    started: list[AgentProcess] = []

    def start(*extra: str, name: str = "agent") -> AgentProcess:
        agent = AgentProcess(server, tmp_path / name, *extra)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
