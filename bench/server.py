"""Benchmark of `labgate server run`: authenticated GET /api/v1/me, refreshes, login time.

Prints, in one run and for each database (SQLite; PostgreSQL too when LABGATE_TEST_POSTGRES_URL
or --postgres is given):
- requests/s of authenticated GET /api/v1/me with 32 concurrent clients against a real
  `labgate server run` process (HTTPS, token verification, deny-list lookup in the database);
- beside it, a bare FastAPI app on the same server stack (uvicorn, uvloop, labgate's own
  connection layer with its TLS, deadlines and per-address cap) returning a constant: the
  framework's floor. Target: authenticated >= half of the bare rate;
- the same bare app with uvicorn terminating TLS itself (no deadlines, no cap): what the
  connection layer costs;
- refresh-token rotations per second (32 concurrent clients, each rotating its own family);
- login time with the production argon2id parameters, for a known and an unknown user name.

Everything runs on loopback; every loop stops at its deadline.

    .venv/bin/python bench/server.py [--seconds 5] [--clients 32] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

PASSWORD = "Violet staple hammock 7 orbit!"  # meets the enhanced policy a new server enforces


def start(
    command: list[str], env: dict[str, str] | None = None, *, quiet: bool = False
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A process that announces itself with one JSON line on stdout; `quiet` drops its stderr."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"did not start: {' '.join(command)}")
    return process, json.loads(line)


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


async def load(
    url: str, context: ssl.SSLContext, headers: dict[str, str], *, clients: int, seconds: float
) -> float:
    """Requests per second of GET `url` from `clients` concurrent keep-alive connections."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with httpx.AsyncClient(verify=context, headers=headers, timeout=30) as http:
            while time.perf_counter() < deadline:
                response = await http.get(url)
                assert response.status_code == 200, response.text
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return done / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    process: subprocess.Popen[str],
    url: str,
    context: ssl.SSLContext,
    headers: dict[str, str],
    args: argparse.Namespace,
) -> tuple[float, float]:
    """Requests/s, and the server's CPU milliseconds per request (steadier on a busy machine)."""
    before, began = cpu_seconds(process.pid), time.perf_counter()
    rate = asyncio.run(load(url, context, headers, clients=args.clients, seconds=args.seconds))
    used = cpu_seconds(process.pid) - before
    return rate, used * 1000 / max(rate * (time.perf_counter() - began), 1)


async def refreshes(
    base: str, context: ssl.SSLContext, tokens: list[str], *, seconds: float
) -> float:
    """Rotations per second, each client rotating its own family as fast as it can."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(token: str) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, verify=context, timeout=30) as http:
            while time.perf_counter() < deadline:
                response = await http.post("/api/v1/auth/refresh", json={"refresh_token": token})
                assert response.status_code == 200, response.text
                token = response.json()["refresh_token"]
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in tokens))
    return done / (time.perf_counter() - started)


def login_times(http: httpx.Client, username: str, password: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        http.post("/api/v1/auth/login", json={"username": username, "password": password})
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def bench_database(label: str, database_url: str | None, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as temp:
        data = Path(temp) / "server"
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
        server, ready = start(run)
        bare, bare_ready = start([sys.executable, __file__, "--bare-server", str(data)])
        plain, plain_ready = start(
            [sys.executable, __file__, "--bare-server", str(data), "--uvicorn-tls"]
        )
        try:
            base = ready["url"]
            with httpx.Client(base_url=base, verify=context, timeout=60) as http:
                one_time = (data / "admin-password").read_text().strip()
                first = {"username": "admin", "password": one_time}
                restricted = http.post("/api/v1/auth/login", json=first).json()
                http.post(
                    "/api/v1/auth/password",
                    headers={"Authorization": f"Bearer {restricted['access_token']}"},
                    json={"old_password": one_time, "new_password": PASSWORD},
                )
                known = login_times(http, "admin", PASSWORD, args.logins)
                unknown = login_times(http, "nobody-" + secrets.token_hex(3), PASSWORD, args.logins)
                families = []
                for _ in range(args.clients):
                    login = {"username": "admin", "password": PASSWORD}
                    families.append(http.post("/api/v1/auth/login", json=login).json())
            headers = {"Authorization": f"Bearer {families[0]['access_token']}"}
            me = "/api/v1/me"
            floor, floor_cpu = measure(bare, bare_ready["url"] + me, context, {}, args)
            plain_rate, plain_cpu = measure(plain, plain_ready["url"] + me, context, {}, args)
            authed, authed_cpu = measure(server, base + me, context, headers, args)
            rotations = asyncio.run(
                refreshes(
                    base, context, [f["refresh_token"] for f in families], seconds=args.seconds
                )
            )
        finally:
            stop(server)
            stop(bare)
            stop(plain)
    ratio = authed / floor if floor else 0.0
    verdict = "meets" if ratio >= 0.5 else "MISSES"
    print(f"[{label}]  (req/s; server CPU ms per request)")
    print(
        f"  bare FastAPI constant, {args.clients} clients: {floor:8.0f} req/s  "
        f"{floor_cpu:5.2f} ms  (floor: same stack as server run)"
    )
    print(
        f"  same, uvicorn's own TLS, no deadlines: {plain_rate:8.0f} req/s  {plain_cpu:5.2f} ms"
        f"  (connection layer: {floor_cpu / plain_cpu - 1:+.0%} CPU per request)"
    )
    print(
        f"  authenticated GET /api/v1/me:        {authed:8.0f} req/s  {authed_cpu:5.2f} ms  "
        f"({ratio:.0%} of floor, {floor_cpu / authed_cpu:.0%} by CPU; target >= 50%: {verdict})"
    )
    print(f"  refresh rotations, {args.clients} families:      {rotations:8.0f} /s")
    print(
        f"  login (argon2id m=64 MiB t=3 p=4):   {known * 1000:8.0f} ms median"
        f"  (unknown user: {unknown * 1000:.0f} ms)"
    )


def bare_server(data: Path, *, uvicorn_tls: bool) -> None:
    """The floor: FastAPI returning a constant, on the same server stack as `server run`
    (or, with `uvicorn_tls`, with uvicorn terminating TLS itself and no connection layer)."""
    import uvicorn
    from fastapi import FastAPI

    from labgate.control.http.serving import tls_context, uvicorn_config
    from labgate.control.settings import ControlSettings

    app = FastAPI()

    @app.get("/api/v1/me")
    def me() -> dict[str, str]:
        return {"identity": "labgate:user:admin", "kind": "user", "name": "admin", "role": "admin"}

    settings = ControlSettings.load(data)
    config = uvicorn_config(settings, app, listen="127.0.0.1:0")
    config.lifespan = "off"
    if uvicorn_tls:
        context = tls_context(settings)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            ssl_certfile=str(data / "server.crt"),
            ssl_context_factory=lambda _c, _d: context,
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=False,
        )
    serve_announcing(config)


def serve_announcing(config: Any) -> None:
    """Serve `config` (a uvicorn.Config) on uvloop, printing `{"url": ...}` once it listens."""
    import uvicorn
    import uvloop

    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(json.dumps({"url": f"https://127.0.0.1:{port}"}), flush=True)
        await task

    uvloop.run(serve())


def postgres_database(admin_url: str, prefix: str = "labgate_bench_") -> tuple[str, Any]:
    """A fresh database on the server at `admin_url`: its URL, and what drops it afterwards."""
    from labgate.control.settings import normalise_database_url

    admin = sa.create_engine(normalise_database_url(admin_url), isolation_level="AUTOCOMMIT")
    name = prefix + secrets.token_hex(4)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(normalise_database_url(admin_url)).set(database=name)
    return url.render_as_string(hide_password=False), (admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--logins", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get("LABGATE_TEST_POSTGRES_URL"))
    parser.add_argument("--bare-server", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--uvicorn-tls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server, uvicorn_tls=args.uvicorn_tls)
        return
    print(
        f"labgate control server benchmark: {args.clients} clients, {args.seconds:.0f} s each, "
        f"{os.cpu_count()} CPUs"
    )
    bench_database("SQLite", None, args)
    if args.postgres:
        url, (admin, name) = postgres_database(args.postgres)
        try:
            bench_database("PostgreSQL", url, args)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
