"""Benchmark of device linking at fleet scale: many agents announcing, then polling.

Prints, in one run and for each database (SQLite with one `labgate server run`; PostgreSQL with
two replicas on one database when LABGATE_TEST_POSTGRES_URL or --postgres is given):
- announcements/s and p50/p99 latency of `POST /api/v1/discovery/announce` (later announcements,
  each agent with its announce token) from N simulated agents (in-process asyncio, loopback),
  `--clients` requests in flight;
- verification polls/s (`wait_seconds` 0: the "nothing queued" answer) from the same agents;
- beside them, a bare FastAPI app on the same server stack (as many processes as replicas)
  answering the same POST with a constant: the framework's floor. Target: announcements >= half
  of the bare rate;
- the server's resident memory per 1,000 announcing agents, and the agents' own (Python heap of
  their instance ids, secrets, windows and presences: what `labgate agent` holds per start);
- the time from the browser's `POST .../link` to a real `labgate agent run` holding its
  certificate (its long poll answers at once). Target: under 2 s on loopback.

Many agents share one public address here (loopback), so the bench raises
`discovery_instances_per_address`; everything else is the default. Every loop stops at its
deadline; all processes are stopped at the end.

    .venv/bin/python bench/fleet.py [--agents 1000] [--seconds 5] [--clients 32] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

# The process helpers, the serve loop and the database maker of the server benchmark beside it.
from server import postgres_database, serve_announcing, start, stop

PASSWORD = "Violet staple hammock 7 orbit!"  # meets the enhanced policy a new server enforces
ENV = {"LABGATE_DISCOVERY_INSTANCES_PER_ADDRESS": "10000"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def announcement(instance_id: str, n: int, token: str | None) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "local_address": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}:46001",
        "hostname": f"device-{n}",
        "model": "bench",
        "serial": f"SN-{n:06d}",
        "announce_token": token,
    }


class Fleet:
    """N simulated agents: what `labgate agent` keeps per start, and its announce token."""

    def __init__(self, count: int) -> None:
        from labgate.agent.discovery import Presence
        from labgate.agent.secret import LocalSecret, new_instance_id
        from labgate.agent.window import Window

        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        self.agents = []
        for n in range(count):
            presence = Presence(
                instance_id=new_instance_id(),
                local_address=f"10.0.{n // 256 % 256}.{n % 256}:46001",
                hostname=f"device-{n}",
                model="bench",
                serial=f"SN-{n:06d}",
            )
            self.agents.append((presence, LocalSecret(), Window()))
        self.heap_bytes = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()


async def first_announcements(
    urls: list[str], context: ssl.SSLContext, fleet: Fleet, clients: int
) -> None:
    queue = list(enumerate(fleet.agents))

    async def worker(k: int) -> None:
        async with httpx.AsyncClient(
            base_url=urls[k % len(urls)], verify=context, timeout=60
        ) as http:
            while queue:
                n, (presence, _, _) = queue.pop()
                answer = await http.post(
                    "/api/v1/discovery/announce", json=announcement(presence.instance_id, n, None)
                )
                assert answer.status_code == 201, answer.text
                presence.announce_token = answer.json()["announce_token"]

    await asyncio.gather(*(worker(k) for k in range(clients)))


async def load(
    urls: list[str],
    context: ssl.SSLContext,
    fleet: Fleet,
    *,
    clients: int,
    seconds: float,
    kind: str,
) -> tuple[float, list[float]]:
    """Requests/s and latencies of `kind` ("announce", "poll") over the fleet, round robin."""
    latencies: list[float] = []
    cursor = [0]
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        async with httpx.AsyncClient(
            base_url=urls[k % len(urls)], verify=context, timeout=60
        ) as http:
            while time.perf_counter() < deadline:
                n = cursor[0] % len(fleet.agents)
                cursor[0] += 1
                presence = fleet.agents[n][0]
                began = time.perf_counter()
                if kind == "announce":
                    body = announcement(presence.instance_id, n, presence.announce_token)
                    answer = await http.post("/api/v1/discovery/announce", json=body)
                    ok = answer.status_code == 200
                else:
                    answer = await http.post(
                        f"/api/v1/discovery/{presence.instance_id}/verification",
                        json={"announce_token": presence.announce_token, "wait_seconds": 0},
                    )
                    ok = answer.status_code == 204
                assert ok, f"{answer.status_code} {answer.text}"
                latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies


def p(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def admin_token(url: str, context: ssl.SSLContext, data: Path) -> str:
    with httpx.Client(base_url=url, verify=context, timeout=60) as http:
        one_time = (data / "admin-password").read_text().strip()
        first = http.post(
            "/api/v1/auth/login", json={"username": "admin", "password": one_time}
        ).json()
        changed = http.post(
            "/api/v1/auth/password",
            headers={"Authorization": f"Bearer {first['access_token']}"},
            json={"old_password": one_time, "new_password": PASSWORD},
        )
        return str(changed.json()["access_token"])


def link_times(
    url: str, context: ssl.SSLContext, token: str, temp: Path, rounds: int
) -> list[float]:
    """Seconds from the browser's POST .../link to the agent's status saying linked."""
    from labgate.agent import headless

    times = []
    headers = {"Authorization": f"Bearer {token}"}
    for k in range(rounds):
        data = temp / f"agent-{k}"
        agent, ready = start([
            sys.executable, "-m", "labgate", "agent", "run", "--server", url,
            "--server-ca", str(temp / "server" / "ca" / "root.crt"), "--data", str(data),
            "--local-listen", "127.0.0.1:0",
        ], quiet=True)  # fmt: skip
        try:
            with httpx.Client(base_url=url, verify=context, timeout=60) as http:
                found = None
                for _ in range(200):
                    listed = headless.discover(http, token)
                    found = next((f for f in listed if f.instance_id == ready["instance_id"]), None)
                    if found:
                        break
                    time.sleep(0.05)
                assert found is not None, "the agent never showed in discovery"
                secret = headless.read_secret(found)
                began = time.perf_counter()
                answer = http.post(
                    f"/api/v1/discovery/{found.instance_id}/link",
                    headers=headers,
                    json={"instance_id": found.instance_id, "secret": secret},
                )
                assert answer.status_code == 202, answer.text
                while time.perf_counter() - began < 30:
                    try:
                        if json.loads((data / "status.json").read_text()).get("state") == "linked":
                            break
                    except (FileNotFoundError, ValueError):
                        pass
                    time.sleep(0.01)
                times.append(time.perf_counter() - began)
        finally:
            stop(agent)
    return times


def bench_database(label: str, database_url: str | None, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as temp_name:
        temp = Path(temp_name)
        data = temp / "server"
        init = [sys.executable, "-m", "labgate", "server", "init", "--data", str(data)]
        if database_url:
            init += ["--database-url", database_url]
        subprocess.run(init, check=True, capture_output=True)
        context = ssl.create_default_context(cafile=data / "ca" / "root.crt")
        run = [
            sys.executable,
            "-m",
            "labgate",
            "server",
            "run",
            "--data",
            str(data),
            "--listen",
            "127.0.0.1:0",
        ]
        replicas = [start(run, ENV, quiet=True) for _ in range(2 if database_url else 1)]
        # As many bare processes as replicas, so the floor has the same processes to run on.
        bares = [
            start([sys.executable, __file__, "--bare-server", str(data)], quiet=True)
            for _ in replicas
        ]
        urls = [ready["url"] for _, ready in replicas]
        try:
            token = admin_token(urls[0], context, data)
            links = link_times(urls[0], context, token, temp, args.links)
            # Warm the replicas (connections, statement caches) before memory is measured.
            warm = Fleet(args.clients)
            asyncio.run(first_announcements(urls, context, warm, args.clients))
            asyncio.run(
                load(urls, context, warm, clients=args.clients, seconds=1.0, kind="announce")
            )
            fleet = Fleet(args.agents)
            rss_before = sum(rss_kib(process.pid) for process, _ in replicas)
            asyncio.run(first_announcements(urls, context, fleet, args.clients))
            rate, lat = asyncio.run(
                load(
                    urls,
                    context,
                    fleet,
                    clients=args.clients,
                    seconds=args.seconds,
                    kind="announce",
                )
            )
            rss_after = sum(rss_kib(process.pid) for process, _ in replicas)
            polls, poll_lat = asyncio.run(
                load(urls, context, fleet, clients=args.clients, seconds=args.seconds, kind="poll")
            )
            floor, floor_lat = asyncio.run(
                load(
                    [ready["url"] for _, ready in bares],
                    context,
                    fleet,
                    clients=args.clients,
                    seconds=args.seconds,
                    kind="announce",
                )
            )
        finally:
            for process, _ in replicas:
                stop(process)
            for process, _ in bares:
                stop(process)
    per_thousand = 1000 / args.agents
    ratio = rate / floor if floor else 0.0
    verdict = "meets" if ratio >= 0.5 else "MISSES"
    plural = "s" if len(urls) > 1 else ""
    memory = (rss_after - rss_before) * per_thousand / 1024
    heap = fleet.heap_bytes * per_thousand / 1024
    fast = "meets" if max(links) < 2 else "MISSES"
    print(f"[{label}, {len(urls)} replica{plural}, {args.agents} agents, {args.clients} in flight]")
    print(f"  bare FastAPI, same POST, same stack:  {_figure(floor, floor_lat)}")
    print(f"  announcements:                        {_figure(rate, lat)}")
    print(f"      {ratio:.0%} of the floor (target >= 50%: {verdict})")
    print(f"  verification polls (nothing queued):  {_figure(polls, poll_lat)}")
    print(f"  server memory per 1,000 agents:       {memory:7.1f} MiB RSS growth")
    print(f"  agent-side state per 1,000 agents:    {heap:7.0f} KiB Python heap")
    print(
        f"  'link' -> agent holds its certificate: median {statistics.median(links):.2f} s, "
        f"max {max(links):.2f} s over {len(links)} (target < 2 s: {fast})"
    )


def _figure(rate: float, latencies: list[float]) -> str:
    return f"{rate:7.0f} /s  p50 {p(latencies, 0.5):6.1f} ms  p99 {p(latencies, 0.99):6.1f} ms"


def bare_server(data: Path) -> None:
    """The floor: FastAPI answering the announcement with a constant, on `server run`'s stack."""
    from fastapi import Body, FastAPI

    from labgate.control.http.serving import uvicorn_config
    from labgate.control.settings import ControlSettings

    app = FastAPI()

    @app.post("/api/v1/discovery/announce")
    async def announce(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return {
            "instance_id": body["instance_id"],
            "announce_token": None,
            "public_address": "127.0.0.1",
            "interval": 5,
            "expires_at": "2026-12-01T00:00:00Z",
            "verification_pending": False,
        }

    config = uvicorn_config(ControlSettings.load(data), app, listen="127.0.0.1:0")
    config.lifespan = "off"
    serve_announcing(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--links", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("LABGATE_TEST_POSTGRES_URL"))
    parser.add_argument("--bare-server", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return
    print(
        f"labgate fleet benchmark: {args.agents} agents, {args.seconds:.0f} s per figure, "
        f"{os.cpu_count()} CPUs"
    )
    bench_database("SQLite", None, args)
    if args.postgres:
        url, (admin, name) = postgres_database(args.postgres, "labgate_fleet_")
        try:
            bench_database("PostgreSQL", url, args)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
