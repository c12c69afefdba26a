"""Benchmark: what shipping the audit log costs the gateway's own writes.

One process plays the gateway's hot path as a session does: for each command an urgent record,
waited for until it is durable (written and fsynced, as the gateway waits before forwarding),
then a reply record nobody waits for. Rounds alternate between the peer, the same log with no
shipper, and the log with `labgate.gateway.shipping.AuditShipper` running beside it, shipping to
a real `labgate server run` in a process of its own over mutual TLS on loopback (each round a
gateway of its own, so each ships a fresh log). Prints the time per command of each round and
the medians, and how far each shipping round got (it must have shipped while it was timed).

    .venv/bin/python bench/audit_shipping.py [--commands 4000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from labgate.control import keystore
from labgate.control.layout import ca_dir, ca_root_path
from labgate.control.provisioning import initialise
from labgate.control.settings import ControlSettings
from labgate.demo.children import start
from labgate.gateway.audit import AuditLog
from labgate.gateway.config import ControlConfig
from labgate.gateway.shipping import AuditShipper
from labgate.pki.authority import CertificateAuthority
from labgate.pki.profiles import Profile


async def commands(log: AuditLog, count: int) -> float:
    """Seconds for `count` commands, each waiting for its record to be durable."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for n in range(count):
        seq = log.record({"event": "command", "conn": n % 9, "command": "DRAW?"}, urgent=True)
        done: asyncio.Future[None] = loop.create_future()
        log.when_durable(seq, lambda _failure, done=done: done.set_result(None))
        await done
        log.record({"event": "reply", "conn": n % 9, "command": "DRAW?", "status": "OK"})
    return time.perf_counter() - started


def gateway_files(settings: ControlSettings, name: str, directory: Path) -> tuple[Path, Path]:
    passphrase = keystore.load_passphrase(settings)
    with CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase) as ca:
        issued = ca.issue(Profile.GATEWAY, name, dns=["localhost"])
    assert issued.key_pem is not None
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(issued.chain_pem)
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    return cert, key


async def one_round(
    settings: ControlSettings, url: str, directory: Path, index: int, *, ship: bool, count: int
) -> tuple[float, int]:
    name = f"bench-{index}"
    cert, key = gateway_files(settings, name, directory)
    control = ControlConfig(
        url=url,
        gateway_name=name,
        server_ca=ca_root_path(settings.data_dir),
        cache_dir=directory / "cache",
    )
    log = AuditLog(directory / f"{name}.jsonl")
    await log.start()
    shipper = AuditShipper(control, log, cert=cert, key=key)
    task = asyncio.create_task(shipper.run()) if ship else None
    try:
        seconds = await commands(log, count)
        shipped = shipper.shipped_seq
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await log.aclose()
    return seconds, shipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each kind")
    args = parser.parse_args()
    if not (100 <= args.commands <= 1_000_000 and 1 <= args.rounds <= 50):
        parser.error("--commands 100 to 1,000,000 and --rounds 1 to 50")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        settings = ControlSettings.load(directory / "server")
        initialise(settings, config={})
        server = start(
            "server",
            ["server", "run", "--data", str(settings.data_dir), "--listen", "127.0.0.1:0"],
            log_dir=directory,
        )
        try:
            figures = asyncio.run(_rounds(settings, str(server.ready["url"]), directory, args))
        finally:
            server.stop()
    for kind, samples in figures.items():
        print(f"{kind:<22} median {statistics.median(samples):7.0f} us per command")
    ratio = statistics.median(figures["shipping"]) / statistics.median(figures["no shipper (peer)"])
    print(f"shipping / peer: {ratio:.2f}")


async def _rounds(
    settings: ControlSettings, url: str, directory: Path, args: argparse.Namespace
) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"no shipper (peer)": [], "shipping": []}
    for index in range(2 * args.rounds):
        ship = index % 4 in (1, 2)  # peer, ship, ship, peer, ...: neither always goes first
        seconds, shipped = await one_round(
            settings, url, directory, index, ship=ship, count=args.commands
        )
        per_command = seconds / args.commands * 1e6
        kind = "shipping" if ship else "no shipper (peer)"
        figures[kind].append(per_command)
        note = f", shipped to seq {shipped} meanwhile" if ship else ""
        print(f"round {index + 1}: {kind:<18} {per_command:7.0f} us per command{note}")
    return figures


if __name__ == "__main__":
    main()
