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

Jobs (the same run, after linking): `--job-agents` linked agents (default 300; the issue's
10,000 by flag), each with its own key, certificate and certificate-bound token, polling
`GET /api/v1/devices/{id}/jobs/next` on a fresh TLS connection presenting its certificate (as
`labgate agent` does), against a bare FastAPI app answering the same GET with "no job" on the
same stack (target >= 0.5x), and the same on kept-alive connections (each agent 20 polls in a
row: the application's cost without the handshake); then a rollout over `--rollout-devices` of
them (default 300; 1,000 by flag; waves 1, 10%, rest) with the agents polling every second
(the server's `jobs_poll_seconds`) with jitter, verifying each job's signature and reporting it
done: the time from creation to COMPLETED.

    .venv/bin/python bench/fleet.py [--agents 1000] [--seconds 5] [--clients 32] [--postgres URL]
        [--job-agents 10000] [--rollout-devices 1000] [--only linking|jobs]
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


# --- jobs: many agents polling, and a rollout over 1,000 of them ---------------------------
SERVER_ERRORS: list[str] = []
REFUSED_REPORTS: list[int] = []
JOBS_ENV = {"LABGATE_JOBS_POLL_SECONDS": "1", "LABGATE_HTTP_CONNECTIONS_PER_ADDRESS": "10000"}


class JobAgent:
    """One simulated linked agent: its device id, its certificate (a TLS context presenting it)
    and its bound access token, as `labgate agent` holds them."""

    def __init__(self, device_id: str, context: ssl.SSLContext, token: str) -> None:
        self.device_id = device_id
        self.context = context
        self.token = token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def login(url: str, context: ssl.SSLContext) -> str:
    with httpx.Client(base_url=url, verify=context, timeout=60) as http:
        answer = http.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


def agent_context(root: Path, pem: Path) -> ssl.SSLContext:
    # Not create_default_context: it loads the system's CA store each time (ms and MiB apiece).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=root)
    context.load_cert_chain(pem)
    return context


async def provision(
    url: str, root: Path, token: str, count: int, temp: Path, clients: int
) -> list[JobAgent]:
    """`count` devices, each with its own key, certificate and certificate-bound token (each
    request on a connection of its own, so none waits on a kept-alive one the server closed)."""
    from labgate.pki import keypair

    plain = agent_context_plain(root)
    admin = {"Authorization": f"Bearer {token}"}
    made: list[JobAgent] = []
    todo = list(range(count))
    (temp / "agents").mkdir(exist_ok=True)

    async def worker() -> None:
        while todo:
            n = todo.pop()
            status, created = await call(url, plain, "POST", "/api/v1/devices", admin,
                                         {"name": f"bench-{n}"})  # fmt: skip
            assert status == 201, created
            device_id = created["device"]["id"]
            key = keypair.new_key()
            own = {"Authorization": f"Bearer {created['credentials']['access_token']}"}
            csr = {"csr_pem": keypair.build_csr(key, device_id)}
            status, issued = await call(url, plain, "POST", "/api/v1/certificates", own, csr)
            assert status == 201, issued
            pem = temp / "agents" / f"{device_id}.pem"
            pem.write_bytes(
                keypair.combined_pem(key, issued["certificate_pem"], issued["chain_pem"])
            )
            context = agent_context(root, pem)
            refresh = {"refresh_token": created["credentials"]["refresh_token"]}
            status, bound = await call(url, context, "POST", "/api/v1/auth/refresh", {}, refresh)
            if status >= 500:  # counted and printed: provisioning is not what is measured
                SERVER_ERRORS.append(f"refresh {status}: {bound}")
                continue
            assert status == 200, bound
            made.append(JobAgent(device_id, context, bound["access_token"]))

    await asyncio.gather(*(worker() for _ in range(clients)))
    return made


def agent_context_plain(root: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=root)
    return context


async def call(
    url: str,
    context: ssl.SSLContext,
    method: str,
    path: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    """One request on a fresh TLS connection (real handshake, the context's certificate), read
    to its end: what an agent's call costs the server, without a client library's own cost."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(
        parts.hostname, parts.port, ssl=context, server_hostname=parts.hostname
    )
    try:
        data = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
                 f"Content-Length: {len(data)}", "Content-Type: application/json",
                 *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = _unchunk(payload)
    return status, json.loads(payload) if payload else None


def _unchunk(data: bytes) -> bytes:
    out, rest = b"", data
    while rest:
        size_text, _, rest = rest.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


async def job_polls(
    urls: list[str], agents: list[JobAgent], *, clients: int, seconds: float
) -> tuple[float, list[float]]:
    """Polls/s and latencies of `GET .../jobs/next`, each on a fresh TLS connection presenting
    the agent's own certificate (as `labgate agent` makes each call)."""
    latencies: list[float] = []
    cursor = [0]
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        while time.perf_counter() < deadline:
            agent = agents[cursor[0] % len(agents)]
            cursor[0] += 1
            began = time.perf_counter()
            status, answer = await call(urls[k % len(urls)], agent.context, "GET",
                                        f"/api/v1/devices/{agent.device_id}/jobs/next",
                                        agent.headers)  # fmt: skip
            assert status == 200, answer
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def kept_alive_polls(
    urls: list[str], agents: list[JobAgent], *, clients: int, seconds: float, run: int = 20
) -> tuple[float, list[float]]:
    """The same GET, `run` polls in a row by one agent on one kept-alive connection."""
    latencies: list[float] = []
    cursor = [0]
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        while time.perf_counter() < deadline:
            agent = agents[cursor[0] % len(agents)]
            cursor[0] += 1
            async with httpx.AsyncClient(
                base_url=urls[k % len(urls)], verify=agent.context, timeout=60
            ) as http:
                for _ in range(run):
                    began = time.perf_counter()
                    answer = await http.get(
                        f"/api/v1/devices/{agent.device_id}/jobs/next", headers=agent.headers
                    )
                    assert answer.status_code == 200, answer.text
                    latencies.append(time.perf_counter() - began)
                    if time.perf_counter() >= deadline:
                        break

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def rollout_time(
    urls: list[str], root: Path, token: str, agents: list[JobAgent], *, clients: int
) -> tuple[float, dict[str, Any]]:
    """Seconds from creating a rollout (waves 1, 10%, rest) over the agents to its end, the
    agents polling at the server's interval with jitter, verifying each job's signature and
    reporting IN_PROGRESS then SUCCEEDED."""
    import random

    from labgate.auth.jobdocument import JOBS_KEY_USE, verify_job
    from labgate.auth.keyring import PublicKeySet

    plain = agent_context_plain(root)
    admin = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=urls[0], verify=plain, timeout=60) as http:
        jwks = (await http.get("/.well-known/jwks.json")).json()
        keys = PublicKeySet.from_jwks(jwks, use=JOBS_KEY_USE)
        began = time.perf_counter()
        made = await http.post("/api/v1/rollouts", headers=admin, json={
            "type": "report_status", "devices": [a.device_id for a in agents],
            "waves": ["1", "10%", "rest"], "failure_threshold": 0.1})  # fmt: skip
        assert made.status_code == 201, made.text
        rollout_id = made.json()["id"]
    finished = asyncio.Event()
    gate = asyncio.Semaphore(clients)
    rng = random.Random(7)
    limit = time.perf_counter() + 600

    async def agent_loop(k: int, agent: JobAgent) -> None:
        await asyncio.sleep(rng.uniform(0, 1.0))
        url, path = urls[k % len(urls)], f"/api/v1/devices/{agent.device_id}/jobs"
        while not finished.is_set() and time.perf_counter() < limit:
            async with gate:
                _, body = await call(url, agent.context, "GET", f"{path}/next", agent.headers)
                job = body["job"]
                if job is not None:
                    claims = verify_job(job["document"], keys, device_id=agent.device_id,
                                        now=datetime.now(UTC))  # fmt: skip
                    report = f"{path}/{claims.job_id}/report"
                    status, started = await call(url, agent.context, "POST", report,
                                                 agent.headers, {"status": "IN_PROGRESS",
                                                 "expected_version": job["version"]})  # fmt: skip
                    if status == 200:  # else (409) the next poll reads the job again
                        done = {"status": "SUCCEEDED", "expected_version": started["version"]}
                        await call(url, agent.context, "POST", report, agent.headers, done)
                    else:
                        REFUSED_REPORTS.append(status)
            await asyncio.sleep(body["poll_seconds"] * rng.uniform(0.8, 1.2))

    async def watch() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=urls[0], verify=plain, timeout=60) as http:
            while time.perf_counter() < limit:
                answer = await http.get(f"/api/v1/rollouts/{rollout_id}", headers=admin)
                if answer.status_code == 401:  # a person's token lasts 5 minutes: log in again
                    admin["Authorization"] = f"Bearer {login(urls[0], plain)}"
                    continue
                state = answer.json()
                if state["state"] != "RUNNING":
                    finished.set()
                    return dict(state)
                await asyncio.sleep(0.2)
        finished.set()
        return {"state": "TIMED OUT"}

    loops = [asyncio.create_task(agent_loop(k, a)) for k, a in enumerate(agents)]
    state = await watch()
    await asyncio.gather(*loops)
    return time.perf_counter() - began, state


def bare_jobs_server(data: Path) -> None:
    """The floor for polls: FastAPI answering jobs/next with "no job", on `server run`'s stack
    (the same TLS with client certificates, the same connection layer)."""
    from fastapi import FastAPI

    from labgate.control.http.serving import uvicorn_config
    from labgate.control.settings import ControlSettings

    app = FastAPI()

    @app.get("/api/v1/devices/{device_id}/jobs/next")
    async def next_job(device_id: str) -> dict[str, Any]:
        return {"job": None, "poll_seconds": 60}

    config = uvicorn_config(ControlSettings.load(data), app, listen="127.0.0.1:0")
    config.lifespan = "off"
    serve_announcing(config)


def bench_jobs(label: str, database_url: str | None, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as temp_name:
        temp = Path(temp_name)
        data = temp / "server"
        init = [sys.executable, "-m", "labgate", "server", "init", "--data", str(data)]
        if database_url:
            init += ["--database-url", database_url]
        subprocess.run(init, check=True, capture_output=True)
        root = data / "ca" / "root.crt"
        run = [sys.executable, "-m", "labgate", "server", "run", "--data", str(data),
               "--listen", "127.0.0.1:0"]  # fmt: skip
        replicas = [start(run, JOBS_ENV, quiet=True) for _ in range(2 if database_url else 1)]
        bares = [
            start([sys.executable, __file__, "--bare-jobs-server", str(data)], JOBS_ENV, quiet=True)
            for _ in replicas
        ]
        urls = [ready["url"] for _, ready in replicas]
        try:
            token = admin_token(urls[0], ssl.create_default_context(cafile=root), data)
            t0 = time.perf_counter()
            agents = asyncio.run(provision(urls[0], root, token, args.job_agents, temp,
                                           args.clients))  # fmt: skip
            provisioned = time.perf_counter() - t0
            asyncio.run(job_polls(urls, agents, clients=args.clients, seconds=1.0))  # warm
            polls, poll_lat = asyncio.run(
                job_polls(urls, agents, clients=args.clients, seconds=args.seconds)
            )
            floor, floor_lat = asyncio.run(
                job_polls([r["url"] for _, r in bares], agents, clients=args.clients,
                          seconds=args.seconds)
            )  # fmt: skip
            kept, kept_lat = asyncio.run(
                kept_alive_polls(urls, agents, clients=args.clients, seconds=args.seconds)
            )
            kept_floor, kept_floor_lat = asyncio.run(
                kept_alive_polls([r["url"] for _, r in bares], agents, clients=args.clients,
                                 seconds=args.seconds)
            )  # fmt: skip
            fleet_size = min(args.rollout_devices, len(agents))
            token = login(urls[0], ssl.create_default_context(cafile=root))  # 5-minute tokens
            took, state = asyncio.run(
                rollout_time(urls, root, token, agents[:fleet_size], clients=args.clients)
            )
        finally:
            for process, _ in replicas + bares:
                stop(process)
    ratio = polls / floor if floor else 0.0
    verdict = "meets" if ratio >= 0.5 else "MISSES"
    print(f"[jobs, {label}, {len(urls)} replica(s), {len(agents)} agents, {args.clients} in flight,"
          " a new TLS connection with the agent's certificate per request]")  # fmt: skip
    print(f"  provisioning (device, certificate, bound token): {provisioned:.1f} s"
          + (f"; {len(SERVER_ERRORS)} answered 5xx, left out: {SERVER_ERRORS[:2]}"
             if SERVER_ERRORS else ""))  # fmt: skip
    print(f"  bare FastAPI, same GET, same stack:   {_figure(floor, floor_lat)}")
    print(f"  GET jobs/next (no job):               {_figure(polls, poll_lat)}")
    print(f"      {ratio:.0%} of the floor (target >= 50%: {verdict})")
    kept_ratio = kept / kept_floor if kept_floor else 0.0
    print(f"  bare, kept-alive (20 polls a connection): {_figure(kept_floor, kept_floor_lat)}")
    print(f"  jobs/next, kept-alive:                {_figure(kept, kept_lat)}")
    kept_verdict = "meets" if kept_ratio >= 0.5 else "MISSES"
    print(f"      {kept_ratio:.0%} of the floor (target >= 50%: {kept_verdict})")
    print(f"  rollout over {fleet_size} devices (waves 1, 10%, rest; poll every 1 s +-20%): "
          f"{took:.1f} s to {state['state']} ({state.get('jobs')}; "
          f"{len(REFUSED_REPORTS)} reports answered 409 and read again)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--links", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("LABGATE_TEST_POSTGRES_URL"))
    parser.add_argument("--job-agents", type=int, default=300)
    parser.add_argument("--rollout-devices", type=int, default=300)
    parser.add_argument("--only", choices=("linking", "jobs"), default=None)
    parser.add_argument("--bare-server", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare-jobs-server", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return
    if args.bare_jobs_server:
        bare_jobs_server(args.bare_jobs_server)
        return
    print(
        f"labgate fleet benchmark: {args.agents} agents, {args.seconds:.0f} s per figure, "
        f"{os.cpu_count()} CPUs"
    )
    named = {"linking": bench_database, "jobs": bench_jobs}
    parts = [part for name, part in named.items() if args.only in (None, name)]
    for part in parts:
        part("SQLite", None, args)
    if args.postgres:
        url, (admin, name) = postgres_database(args.postgres, "labgate_fleet_")
        try:
            for part in parts:
                part("PostgreSQL", url, args)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
