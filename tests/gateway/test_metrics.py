"""/metrics: sessions, handshakes and their failures by reason, commands by decision, latency."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def _scrape(gateway: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://{gateway.gateway.metrics_address}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_sessions_decisions_failures_and_latency(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    client = raw_client(gateway, pki, "olive")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC Observer") == b"OK 0"
    assert client.ask("1 POW?").startswith(b"OK 1")
    assert client.ask("2 OPEN").startswith(b"ERRor 2 [InsufficientAccess]")
    _try_without_certificate(gateway, pki)
    metrics = _scrape(gateway)
    plain = (("instrument", "qs5-plain"),)
    assert metrics[("labgate_gateway_sessions", plain)] == 1
    assert metrics[("labgate_gateway_sessions_started_total", plain)] >= 1
    assert metrics[("labgate_gateway_handshakes_total", ())] >= 1
    allowed = (("decision", "allowed"), ("instrument", "qs5-plain"))
    answered = (("decision", "answered"), ("instrument", "qs5-plain"))
    denied = (("decision", "denied"), ("instrument", "qs5-plain"))
    assert metrics[("labgate_gateway_commands_total", allowed)] == 1  # POW?
    assert metrics[("labgate_gateway_commands_total", answered)] == 1  # ACC, by the gateway
    assert metrics[("labgate_gateway_commands_total", denied)] == 1
    assert metrics[("labgate_gateway_upstream_latency_seconds_count", plain)] >= 1
    failed = (("reason", "tls"),)
    assert metrics[("labgate_gateway_handshake_failures_total", failed)] == 1
    # The POW? went out only once its record was on disk: the durable point is past it.
    assert metrics[("labgate_gateway_audit_durable_seq", ())] >= _seq_of(gateway, "POW?")
    assert metrics[("labgate_gateway_audit_failing", ())] == 0


def _seq_of(gateway: Any, command: str) -> int:
    for line in gateway.gateway.audit.path.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "command" and record.get("command") == command:
            return int(record["seq"])
    raise AssertionError(f"no record of {command} on disk")


def _try_without_certificate(gateway: Any, pki: Any) -> None:
    context = ssl.create_default_context(cafile=str(pki.root))
    with socket.create_connection(gateway.address("qs5-plain"), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="qs5-plain") as tls:
                assert tls.recv(100) == b""
        except (ssl.SSLError, ConnectionResetError):
            pass  # refused: the alert or the end of the stream, either is a refusal


def _days_left(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """serial -> days left, for every labgate_certificate_days_left sample."""
    return {
        dict(labels)["serial"]: value
        for (name, labels), value in metrics.items()
        if name == "labgate_certificate_days_left"
    }


def test_metrics_show_days_left_of_the_served_chain(gateway: Any, pki: Any) -> None:
    from cryptography import x509

    chain = x509.load_pem_x509_certificates(pki.gateway_crt.read_bytes())
    days = _days_left(_scrape(gateway))
    assert set(days) == {format(c.serial_number, "x") for c in chain}
    leaf = format(chain[0].serial_number, "x")
    assert 89 < days[leaf] <= 90
    assert days[format(chain[1].serial_number, "x")] > 700  # the issuing CA it sends too


def test_a_standalone_gateway_warns_from_30_days_before_its_certificate_expires(
    gateway_factory: Any, pki: Any, tmp_path: Any, caplog: Any
) -> None:
    import logging
    import time

    from labgate.pki import Profile

    short = pki.ca.issue(Profile.GATEWAY, "gw-short", dns=["localhost"], ips=["127.0.0.1"], days=10)
    pki.ca.handed_out(short)
    short.write(tmp_path / "short")
    caplog.set_level(logging.WARNING, logger="labgate.gateway")
    gateway = gateway_factory(tls_files=(tmp_path / "short.crt", tmp_path / "short.key", pki.root))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        "gw-short" in r.getMessage() for r in caplog.records
    ):
        time.sleep(0.05)
    warned = [r.getMessage() for r in caplog.records if "gw-short" in r.getMessage()]
    assert warned and warned[0].endswith("days: renew it"), warned
    assert "in 10.0 days" in warned[0] or "in 9.9 days" in warned[0], warned
    days = _days_left(_scrape(gateway))
    assert 9.9 < days[format(short.serial, "x")] <= 10


def test_a_gateway_far_from_expiry_does_not_warn(gateway: Any, caplog: Any) -> None:
    import logging

    caplog.set_level(logging.WARNING, logger="labgate.gateway")
    _scrape(gateway)  # it is up and serving
    assert not [r for r in caplog.records if "renew it" in r.getMessage()]


def test_with_a_control_server_the_client_certificate_it_presents_is_watched_too(
    tmp_path: Any, pki: Any, simulator: Any
) -> None:
    from labgate.gateway.config import load_config
    from labgate.gateway.metrics import served_certificates
    from labgate.pki import Profile

    from .conftest import write_config

    presented = pki.ca.issue(Profile.GATEWAY, "gw-control", dns=["localhost"])
    pki.ca.handed_out(presented)
    presented.write(tmp_path / "towards-control")
    control = (
        '[control]\nurl = "https://127.0.0.1:8443"\ngateway_name = "gw"\n'
        f'server_ca = "{pki.root}"\ncert = "{tmp_path / "towards-control.crt"}"\n'
        f'key = "{tmp_path / "towards-control.key"}"\n'
    )
    config = load_config(write_config(tmp_path, pki, simulator, extra_sections=control))
    assert list(served_certificates(config)) == [
        ("server", pki.gateway_crt),
        ("control-client", tmp_path / "towards-control.crt"),
    ]
