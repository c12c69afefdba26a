"""Benchmark of offboarding: what the bundle long poll costs, and how fast a disable ends access.

Prints, in one run:
- the control server's CPU use and the latency of authenticated GET /api/v1/me while 0 and 50
  gateways hold a bundle long poll open (each re-asks at once after every answer), beside the
  peer a 1-second reaction would need without long polls: 50 gateways fetching a bundle every
  second (short polls); and the per-bundle cost of the old 60-second poll for reference;
- the time from `POST /api/v1/users/{id}/disable` to the person's live qslib session being
  closed by a real gateway with `[control]` (the demo stack: `labgate server`, `labgate sim`,
  `labgate gateway`), median, minimum and maximum of 10.

Everything runs on loopback; every loop stops at its deadline.

    .venv/bin/python bench/offboarding.py [--seconds 10] [--gateways 50] [--disables 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "demo"))

PASSWORD = "Violet staple hammock 7 orbit!"  # meets the enhanced policy a new server enforces
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (and its waited-for children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def gateway_contexts(server_dir: Path, count: int, root: Path) -> list[tuple[str, ssl.SSLContext]]:
    from labgate.control.keystore import load_passphrase
    from labgate.control.layout import ca_dir
    from labgate.control.settings import ControlSettings
    from labgate.pki.authority import CertificateAuthority
    from labgate.pki.profiles import Profile

    passphrase = load_passphrase(ControlSettings.load(server_dir))
    contexts = []
    files = server_dir.parent / "gateways"
    files.mkdir(exist_ok=True)
    with CertificateAuthority.open(ca_dir(server_dir), passphrase=passphrase) as ca:
        for i in range(count):
            name = f"bench-{i}"
            issued = ca.issue(Profile.GATEWAY, name, dns=["localhost"])
            assert issued.key_pem is not None
            crt, key = files / f"{name}.crt", files / f"{name}.key"
            crt.write_bytes(issued.chain_pem)
            key.write_bytes(issued.key_pem)
            key.chmod(0o600)
            ca.handed_out(issued)
            context = ssl.create_default_context(cafile=str(root))
            context.load_cert_chain(str(crt), str(key))
            contexts.append((name, context))
    return contexts


async def gateway(
    url: str, name: str, context: ssl.SSLContext, *, long_poll: bool, until: float
) -> int:
    """One gateway following its bundle until `until`; the number of answers it got."""
    answers = 0
    after: int | None = None
    async with httpx.AsyncClient(base_url=url, verify=context, timeout=60) as client:
        while time.monotonic() < until:
            params: dict[str, Any] = {"instrument": ["qs5-demo"]}
            if long_poll and after is not None:
                params.update(after=after, wait=max(0.5, min(25.0, until - time.monotonic())))
            answer = await client.get(f"/api/v1/gateways/{name}/bundle", params=params)
            answers += 1
            if answer.status_code == 200 and long_poll:
                after = _changes(answer.text)
            elif not long_poll:
                await asyncio.sleep(max(0.0, min(1.0, until - time.monotonic())))
    return answers


def _changes(token: str) -> int:
    import base64
    import json

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["changes"])


async def me_latency(url: str, root: Path, headers: dict[str, str], *, until: float) -> list[float]:
    context = ssl.create_default_context(cafile=str(root))
    times = []
    async with httpx.AsyncClient(base_url=url, verify=context, timeout=30) as client:
        while time.monotonic() < until:
            started = time.perf_counter()
            answer = await client.get("/api/v1/me", headers=headers)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
            await asyncio.sleep(0.05)
    return times


async def phase(
    url: str,
    root: Path,
    headers: dict[str, str],
    gateways: list[tuple[str, ssl.SSLContext]],
    *,
    long_poll: bool,
    seconds: float,
    pid: int,
) -> dict[str, float]:
    warm = time.monotonic() + 1.5
    until = warm + seconds
    tasks = [
        asyncio.create_task(gateway(url, name, ctx, long_poll=long_poll, until=until))
        for name, ctx in gateways
    ]
    await asyncio.sleep(max(0.0, warm - time.monotonic()))
    before = cpu_seconds(pid)
    latencies = await me_latency(url, root, headers, until=until)
    used = cpu_seconds(pid) - before
    answers = sum(await asyncio.gather(*tasks))
    return {
        "cpu_percent": 100 * used / seconds,
        "me_p50_ms": 1000 * statistics.median(latencies),
        "answers_per_s": answers / (seconds + 1.5),
    }


def bench_long_poll(args: argparse.Namespace) -> None:
    from labgate.demo.children import start
    from labgate.demo.enrolment import enrol_admin

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server_dir = base / "server"
        subprocess.run(
            [sys.executable, "-m", "labgate", "server", "init", "--data", str(server_dir)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        root = server_dir / "ca" / "root.crt"
        gateways = gateway_contexts(server_dir, args.gateways, root)
        server = start(
            "server",
            ["server", "run", "--data", str(server_dir), "--listen", "127.0.0.1:0"],
            log_dir=base,
        )
        try:
            url = str(server.ready["url"])
            enrol_admin(
                url=url,
                server_ca=root,
                one_time_password=server_dir / "admin-password",
                new_password=base / "admin-password",
                grants={"labgate:user:admin": "Observer"},
            )
            with httpx.Client(base_url=url, verify=str(root), timeout=30) as http:
                token = http.post(
                    "/api/v1/auth/login",
                    json={
                        "username": "admin",
                        "password": (base / "admin-password").read_text().strip(),
                    },
                ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            pid = server.process.pid
            rows = [
                ("idle (no gateway)", []),
                (f"{args.gateways} gateways, long poll", gateways),
                (f"{args.gateways} gateways, short poll every 1 s", gateways),
            ]
            print(
                f"control server with gateways following their bundles ({args.seconds:.0f} s each)"
            )
            print(f"{'':44} {'server CPU':>10} {'GET /me p50':>12} {'answers/s':>10}")
            for label, who in rows:
                figures = asyncio.run(
                    phase(
                        url,
                        root,
                        headers,
                        who,
                        long_poll="long" in label,
                        seconds=args.seconds,
                        pid=pid,
                    )
                )
                print(
                    f"{label:44} {figures['cpu_percent']:9.1f}% {figures['me_p50_ms']:10.1f}ms"
                    f" {figures['answers_per_s']:10.1f}"
                )
        finally:
            server.stop()


def bench_disable(args: argparse.Namespace) -> None:
    from test_offboarding import admin_headers, api_client, closed_after, connected, enrol

    from labgate.demo.stack import running

    with (
        tempfile.TemporaryDirectory() as tmp,
        running(Path(tmp) / "demo") as demo,
        api_client(demo) as api,
    ):
        admin = admin_headers(api, demo)
        people = [enrol(api, admin, f"leaver{i}", Path(tmp)) for i in range(args.disables)]
        times = []
        for person in people:
            session = connected(demo, person["pem"])
            time.sleep(1.0)  # the gateway is back to waiting on the server
            started = time.monotonic()
            answer = api.post(f"/api/v1/users/{person['id']}/disable", headers=admin)
            assert answer.status_code == 200, answer.text
            times.append(closed_after(session, started))
            session.disconnect()
    ms = [1000 * t for t in times]
    print(
        f"disable -> closed qslib session, {len(ms)} people: median {statistics.median(ms):.0f} ms,"
        f" min {min(ms):.0f} ms, max {max(ms):.0f} ms (promise: < 5000 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--gateways", type=int, default=50)
    parser.add_argument("--disables", type=int, default=10)
    args = parser.parse_args()
    bench_long_poll(args)
    bench_disable(args)


if __name__ == "__main__":
    main()
