"""The gateway's shipper against a live control server over mutual TLS: it ships the log as it is
written, catches up after an outage, and a log cut short or rewritten on the gateway's host is
refused by the server, which then reports the divergence; `labgate audit verify` cannot see it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from typer.testing import CliRunner

from labgate.cli.app import app as cli
from labgate.control.http.serving import run_in_thread
from labgate.control.layout import ca_root_path
from labgate.gateway.audit import AuditLog
from labgate.gateway.auditchain import next_line, start_line, verify
from labgate.gateway.config import ControlConfig
from labgate.gateway.metrics import GatewayMetrics
from labgate.gateway.shipping import AuditShipper, Shipping, stop_shipping
from labgate.pki.profiles import Profile

from .conftest import Api, tls_identity

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def control(settings: Any, gateway_identity: Any, tmp_path: Path) -> Any:
    """`control(url)`: the `[control]` table of gateway site-1, with its own certificate."""
    chain, key, _ = gateway_identity(Profile.GATEWAY, "site-1")
    cert_path, key_path = tls_identity(tmp_path, "site-1", chain, key)

    def table(url: str) -> tuple[ControlConfig, Path, Path]:
        config = ControlConfig(
            url=url,
            gateway_name="site-1",
            server_ca=ca_root_path(settings.data_dir),
            cache_dir=tmp_path / "cache",
            ship_interval=0.05,
            ship_max_backoff=0.4,
        )
        return config, cert_path, key_path

    return table


def server_head(url: str, settings: Any) -> dict[str, Any]:
    """The gateway's head and divergence as an administrator reads them."""
    import ssl

    import httpx

    context = ssl.create_default_context(cafile=ca_root_path(settings.data_dir))
    with Api(httpx.Client(base_url=url, verify=context), settings) as api:
        again = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": api.STRONG_PASSWORD}
        )
        if again.status_code == 200:
            token = again.json()["access_token"]
        else:  # the first time: the one-time password, changed
            token = api.login_fully("admin", api.admin_password)["access_token"]
        heads = api.get("/api/v1/audit/gateways", headers=api.bearer(token)).json()["gateways"]
    assert len(heads) == 1
    head: dict[str, Any] = heads[0]
    return head


async def ship_until_caught_up(shipper: AuditShipper, timeout: float = 20.0) -> bool:
    task = asyncio.create_task(shipper.run())
    try:
        return await shipper.caught_up(timeout)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def failures(metrics: GatewayMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "labgate_gateway_audit_ship_failures_total", {"reason": reason}
    )
    return value or 0.0


def test_the_log_is_shipped_as_written_and_caught_up_after_an_outage(
    settings: Any, control: Any, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"

    async def scenario() -> None:
        with contextlib.ExitStack() as first:
            running = first.enter_context(run_in_thread(settings))
            url, port = running.url, running.port
            config, cert, key = control(url)
            log = AuditLog(path)
            await log.start()
            metrics = GatewayMetrics()
            shipper = AuditShipper(config, log, cert=cert, key=key, metrics=metrics)
            task = asyncio.create_task(shipper.run())
            for n in range(300):
                log.record({"event": "command", "conn": n % 7, "command": "DRAW?", "n": n})
            await log.flush()
            assert await shipper.caught_up(20)
            assert shipper.shipped_seq == log.durable_seq
            # The server goes away; the gateway keeps recording, nothing waits for the shipper.
            await asyncio.to_thread(first.close)
        for n in range(300, 1500):
            log.record({"event": "command", "conn": n % 7, "command": "DRAW?", "n": n})
        await log.flush()
        assert not await shipper.caught_up(1.0)
        assert failures(metrics, "unreachable") >= 1
        lag = metrics.registry.get_sample_value("labgate_gateway_audit_ship_lag_records")
        assert lag is not None and lag >= 1200
        with run_in_thread(settings, listen=f"127.0.0.1:{port}"):
            assert await shipper.caught_up(30)
            await log.aclose()  # its log-stop is shipped too
            assert await shipper.caught_up(10)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            shipper.reader.close()
            head = await asyncio.to_thread(server_head, url, settings)
        intact = verify(path.read_bytes().splitlines(keepends=True))
        assert intact.ok
        assert (head["seq"], head["hash"], head["closed"]) == (intact.last_seq, intact.head, True)
        assert head["records"] == intact.records
        assert head["divergence"] is None

    asyncio.run(scenario())


def _ship_file(config: ControlConfig, cert: Path, key: Path, path: Path) -> GatewayMetrics:
    """Start the log at `path` as a restarted gateway would, ship it, stop as the gateway stops:
    the log closed first, then what is left shipped (`stop_shipping`)."""

    async def scenario() -> GatewayMetrics:
        metrics = GatewayMetrics()
        log = AuditLog(path)
        await log.start()
        shipper = AuditShipper(config, log, cert=cert, key=key, metrics=metrics)
        shipping = Shipping(shipper=shipper, task=asyncio.create_task(shipper.run()))
        log.record({"event": "gateway_start", "instruments": ["qs5-bench3"]})
        await log.aclose()
        await stop_shipping(shipping, wait=3.0)
        return metrics

    return asyncio.run(scenario())


def test_a_log_cut_short_on_the_gateways_host_is_refused_and_reported(
    settings: Any, control: Any, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for n in range(30):
            log.record({"event": "command", "conn": 1, "command": "RUNTITLE?", "n": n})
    with run_in_thread(settings) as running:
        config, cert, key = control(running.url)
        _ship_file(config, cert, key, path)
        shipped = path.read_bytes().splitlines(keepends=True)
        held = server_head(running.url, settings)
        assert held["seq"] == len(shipped) - 1
        # Someone on the gateway's host cuts the last records off, at a line boundary...
        path.write_bytes(b"".join(shipped[:12]))
        # ... and `labgate audit verify` finds nothing wrong with what is left.
        checked = CliRunner().invoke(cli, ["audit", "verify", str(path)])
        assert checked.exit_code == 0, checked.output
        assert "intact: 12 records" in checked.output
        # The gateway starts again on the cut file and ships: the server refuses and says where.
        metrics = _ship_file(config, cert, key, path)
        assert failures(metrics, "audit_fork") >= 1
        head = server_head(running.url, settings)
    assert head["seq"] == held["seq"]  # nothing of the cut log was taken
    divergence = head["divergence"]
    assert divergence["code"] == "audit_fork"
    assert divergence["sent_seq"] == 12  # the first record written after the cut
    assert divergence["held_hash"] == verify(shipped[:13]).head
    assert divergence["sent_hash"] != divergence["held_hash"]


def test_a_log_rewritten_on_the_gateways_host_is_refused_and_reported(
    settings: Any, control: Any, tmp_path: Path
) -> None:
    """A forger with write access edits record 5 and recomputes every link after it, so the file
    verifies; the chain the server holds does not descend from it."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for n in range(20):
            log.record({"event": "command", "conn": 1, "command": "DRAW?", "n": n})
    with run_in_thread(settings) as running:
        config, cert, key = control(running.url)
        _ship_file(config, cert, key, path)
        original = path.read_bytes().splitlines(keepends=True)
        records = [json.loads(line) for line in original]
        line, chain = start_line(log_id=records[0]["log_id"], time=records[0]["time"])
        forged = [line]
        for record in records[1:]:
            event = {k: v for k, v in record.items() if k not in ("seq", "prev", "digest", "time")}
            if record["seq"] == 5:
                event["command"] = "OPEN"
            line, chain = next_line(chain, event, time=record["time"])
            forged.append(line)
        path.write_bytes(b"".join(forged))
        assert CliRunner().invoke(cli, ["audit", "verify", str(path)]).exit_code == 0
        metrics = _ship_file(config, cert, key, path)
        head = server_head(running.url, settings)
    assert failures(metrics, "audit_fork") >= 1
    assert head["divergence"]["code"] == "audit_fork"
    assert head["divergence"]["sent_seq"] == len(original)  # the next record: its prev is forged
    assert head["divergence"]["held_head"] == verify(original).head


def test_the_shipper_presents_the_renewed_certificate_once_the_old_one_is_refused(
    settings: Any, control: Any, gateway_identity: Any, tmp_path: Path
) -> None:
    """The gateway renews its control client certificate in place (`labgate.gateway.renewal`);
    once the old one is refused (here revoked, in time expired) the shipper reads the files again
    and goes on with the new one, instead of failing for ever."""
    from labgate.control.keystore import load_passphrase
    from labgate.control.layout import ca_dir
    from labgate.pki.atomic import PRIVATE, write_atomic
    from labgate.pki.authority import CertificateAuthority

    path = tmp_path / "audit.jsonl"

    async def scenario() -> None:
        with run_in_thread(settings) as running:
            config, cert, key = control(running.url)
            old = x509_serial(cert)
            log = AuditLog(path)
            await log.start()
            metrics = GatewayMetrics()
            shipper = AuditShipper(config, log, cert=cert, key=key, metrics=metrics)
            task = asyncio.create_task(shipper.run())
            try:
                log.record({"event": "command", "conn": 1, "command": "DRAW?"})
                await log.flush()
                assert await shipper.caught_up(20)
                chain, new_key, _ = gateway_identity(Profile.GATEWAY, "site-1")
                write_atomic(key, new_key, mode=PRIVATE)  # as the renewal writes them
                write_atomic(cert, chain)
                with CertificateAuthority.open(
                    ca_dir(settings.data_dir), passphrase=load_passphrase(settings)
                ) as ca:
                    ca.revoke(old, "superseded")
                for n in range(20):
                    log.record({"event": "command", "conn": 1, "command": "DRAW?", "n": n})
                await log.flush()
                assert await shipper.caught_up(20)
                assert shipper.shipped_seq == log.durable_seq
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await log.aclose()

    asyncio.run(scenario())


def x509_serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number
