"""Benchmark of the web console's page renders with a fleet and a long audit trail.

A control server (TLS on loopback, in this process's thread, SQLite by default) holds 1,000
devices (online, stale and never seen, each with a certificate) and 100,000 gateway audit records;
one logged-in browser session asks for each console page in turn. Prints p50 and p95 per page
(the target: p95 under 200 ms), beside the peer in the same run: the API's JSON for the same data
(`GET /api/v1/devices`, all devices; `GET /api/v1/audit/records`, one page of 50).

    .venv/bin/python bench/console.py [--devices 1000] [--records 100000] [--rounds 40]
                                      [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

PASSWORD = "Violet staple hammock 7 orbit!"  # meets the enhanced policy a new server enforces
PEOPLE = tuple(f"labgate:user:person{n:02d}" for n in range(20))
INSTRUMENTS = tuple(f"qs5-bench{n}" for n in range(10))
COMMANDS = ("RUNTITLE?", "BLOCK?", "DRAW?", "RUN", "AUTH", "TEMP?")
BATCH = 5000


def fill(settings: Any, *, devices: int, records: int) -> None:
    """Devices with certificates, and a gateway's trail, written straight into the tables."""
    from labgate.control.database import make_engine
    from labgate.control.tables import Device, GatewayAuditRecord, IssuedCertificate, User

    engine = make_engine(settings.resolved_database_url)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        owner = connection.scalar(select(User.id).where(User.username == "admin"))
        rows, certificates = [], []
        for n in range(devices):
            seen = None if n % 5 == 0 else now - timedelta(minutes=(n % 7) * 4, seconds=n)
            rows.append(
                {"id": f"d-{n:016x}", "name": f"bench-{n:04d}", "owner_id": owner,
                 "revoked": False, "created_at": now - timedelta(days=n % 90),
                 "last_seen_at": seen}
            )  # fmt: skip
            certificates.append(
                {"serial": str(10**12 + n), "subject": f"labgate:device:d-{n:016x}",
                 "expires_at": now + timedelta(days=1 + n % 60), "revoked": False,
                 "issued_at": now - timedelta(days=1), "profile": "device"}
            )  # fmt: skip
        connection.execute(insert(Device), rows)
        connection.execute(insert(IssuedCertificate), certificates)
        start = now - timedelta(seconds=records)
        for first in range(0, records, BATCH):
            batch = []
            for seq in range(first, min(first + BATCH, records)):
                command = COMMANDS[seq % len(COMMANDS)]
                decision = "denied" if command in ("RUN", "AUTH") else "allowed"
                record = {"event": "command", "seq": seq, "command": command}
                batch.append(
                    {"gateway": f"site-{seq % 3}", "log_id": "b" * 32, "seq": seq, "hash": "0" * 64,
                     "at": start + timedelta(seconds=seq), "event": "command",
                     "identity": PEOPLE[seq % len(PEOPLE)],
                     "instrument": INSTRUMENTS[(seq // 7) % len(INSTRUMENTS)],
                     "command": command, "decision": decision,
                     "source": f"10.0.{seq % 4}.{seq % 200}",
                     "session": f"site-{seq % 3}/{'b' * 16}/1/{seq // 20}",
                     "line": json.dumps(record)}
                )  # fmt: skip
            connection.execute(insert(GatewayAuditRecord), batch)
    engine.dispose()


class Browser:
    """A logged-in console session: cookies kept, each form's CSRF token read from its page."""

    def __init__(self, url: str, root: Path) -> None:
        self.http = httpx.Client(
            base_url=url,
            verify=ssl.create_default_context(cafile=str(root)),
            timeout=60,
            follow_redirects=True,
        )
        self.origin = url

    def form(self, path: str, page: str, fields: dict[str, str]) -> httpx.Response:
        token = re.search(r'name="csrf" value="([^"]+)"', self.http.get(page).text)
        assert token is not None, page
        return self.http.post(path, data={**fields, "csrf": token.group(1)},
                              headers={"Origin": self.origin})  # fmt: skip

    def login(self, password: str, new_password: str) -> None:
        first = self.form("/console/login", "/console/login",
                          {"username": "admin", "password": password})  # fmt: skip
        if first.url.path == "/console/password":
            changed = self.form("/console/password", "/console/password",
                                {"old_password": password, "new_password": new_password,
                                 "repeat_password": new_password})  # fmt: skip
            assert changed.status_code == 200, changed.text[:300]


def timed(http: httpx.Client, path: str, rounds: int, **kwargs: Any) -> list[float]:
    for _ in range(3):  # warm: caches, compiled statements, connections
        assert http.get(path, **kwargs).status_code == 200, path
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = http.get(path, **kwargs)
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return took


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from labgate.control.http.serving import run_in_thread
    from labgate.control.layout import ADMIN_PASSWORD_FILE
    from labgate.control.provisioning import initialise
    from labgate.control.settings import ControlSettings

    with tempfile.TemporaryDirectory(prefix="labgate-console-bench-") as tmp:
        data = Path(tmp) / "server"
        fast = {"argon2_memory_kib": 1024, "argon2_time_cost": 1, "argon2_parallelism": 1}
        settings = ControlSettings.load(data, database_url=args.database_url, **fast)
        initialise(settings, config={"database_url": args.database_url})
        settings = ControlSettings.load(data, database_url=args.database_url, **fast)
        started = time.perf_counter()
        fill(settings, devices=args.devices, records=args.records)
        print(f"filled {args.devices} devices and {args.records} audit records "
              f"in {time.perf_counter() - started:.1f} s "
              f"({settings.resolved_database_url.split(':')[0]})")  # fmt: skip
        one_time = (data / ADMIN_PASSWORD_FILE).read_text().strip()
        with run_in_thread(settings) as server:
            browser = Browser(server.url, server.ca_root)
            browser.login(one_time, PASSWORD)
            trust = ssl.create_default_context(cafile=str(server.ca_root))
            api = httpx.Client(base_url=server.url, timeout=60, verify=trust)
            login = {"username": "admin", "password": PASSWORD}
            token = api.post("/api/v1/auth/login", json=login).json()
            bearer = {"Authorization": f"Bearer {token['access_token']}"}
            deep = browser.http.get("/console/audit?identity=labgate:user:person07").text
            cursor = re.search(r'href="/console/audit\?([^"]+)" id="older"', deep)
            assert cursor is not None
            pages = [
                ("console /console (dashboard)", "/console"),
                ("console /console/devices (page 1 of 20)", "/console/devices"),
                ("console devices sorted by certificate, page 15",
                 "/console/devices?sort=certificate&desc=true&page=15"),
                ("console devices, stale only", "/console/devices?show=stale&sort=last_seen"),
                ("console /console/certificates (all)", "/console/certificates"),
                ("console /console/audit (newest 50)", "/console/audit"),
                ("console audit, identity filter", "/console/audit?identity=labgate:user:person07"),
                ("console audit, identity filter, page 2",
                 "/console/audit?" + cursor.group(1).replace("&amp;", "&")),
                ("console audit, instrument + decision",
                 "/console/audit?instrument=qs5-bench3&decision=denied"),
                ("console audit, time range (1 h)",
                 "/console/audit?since=" + (datetime.now(UTC) - timedelta(hours=5)).strftime(
                     "%Y-%m-%dT%H:%M") + "&until=" + (datetime.now(UTC) - timedelta(hours=4)
                 ).strftime("%Y-%m-%dT%H:%M")),
            ]  # fmt: skip
            print(f"\n{'page':58} {'p50 ms':>8} {'p95 ms':>8}")
            worst = 0.0
            for label, path in pages:
                took = timed(browser.http, path, args.rounds)
                worst = max(worst, p95(took))
                print(f"{label:58} {statistics.median(took):8.1f} {p95(took):8.1f}")
            print("peer: the API's JSON for the same data")
            for label, path in (
                ("api GET /api/v1/devices (all devices)", "/api/v1/devices"),
                ("api GET /api/v1/audit/records (newest 50)", "/api/v1/audit/records"),
                ("api audit records, identity filter",
                 "/api/v1/audit/records?identity=labgate:user:person07"),
            ):  # fmt: skip
                took = timed(api, path, args.rounds, headers=bearer)
                print(f"{label:58} {statistics.median(took):8.1f} {p95(took):8.1f}")
            verdict = "meets" if worst < 200 else "MISSES"
            print(f"\nworst console p95 {worst:.1f} ms: {verdict} the 200 ms target")
            api.close()
            browser.http.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
