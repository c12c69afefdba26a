"""Prometheus metrics of one gateway, in a registry of its own (two gateways in one process,
as in tests, do not share counters)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from labgate.pki.expiry import DaysLeftCollector, Sources

if TYPE_CHECKING:
    from labgate.gateway.config import GatewayConfig


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.sessions = Gauge(
            "labgate_gateway_sessions",
            "Client sessions open now",
            ["instrument"],
            registry=self.registry,
        )
        self.sessions_started = Counter(
            "labgate_gateway_sessions_started",
            "Client sessions started (TLS verified and granted)",
            ["instrument"],
            registry=self.registry,
        )
        self.handshakes = Counter(
            "labgate_gateway_handshakes",
            "Client TLS handshakes that succeeded",
            registry=self.registry,
        )
        self.handshake_failures = Counter(
            "labgate_gateway_handshake_failures",
            "Client connections refused before a session began, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.commands = Counter(
            "labgate_gateway_commands",
            "Client commands, by decision (allowed, denied, answered, malformed)",
            ["instrument", "decision"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "labgate_gateway_upstream_latency_seconds",
            "Time from forwarding a command to the instrument's final reply",
            ["instrument"],
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                10,
                60,
            ),
            registry=self.registry,
        )
        self.upstream_busy = Counter(
            "labgate_gateway_upstream_busy",
            "Clients told the instrument is busy",
            ["instrument"],
            registry=self.registry,
        )
        self.audit_durable_seq = Gauge(
            "labgate_gateway_audit_durable_seq",
            "Seq of the last audit record written and fsynced (commands wait for this point)",
            registry=self.registry,
        )
        self.audit_failing = Gauge(
            "labgate_gateway_audit_failing",
            "1 while writing the audit log fails (commands are refused), else 0",
            registry=self.registry,
        )
        self.audit_shipped_seq = Gauge(
            "labgate_gateway_audit_shipped_seq",
            "Seq of the last audit record the control server holds (-1: none of this log)",
            registry=self.registry,
        )
        self.audit_ship_lag = Gauge(
            "labgate_gateway_audit_ship_lag_records",
            "Durable audit records not yet held by the control server",
            registry=self.registry,
        )
        self.audit_ship_failures = Counter(
            "labgate_gateway_audit_ship_failures",
            "Audit batches or head requests that failed, by reason (unreachable, audit_fork, ...)",
            ["reason"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "labgate_gateway_reloads",
            "Configuration reloads, by result",
            ["result"],
            registry=self.registry,
        )

        self.renewals = Counter(
            "labgate_gateway_certificate_renewals",
            "Renewals of the gateway's own certificates, by purpose (server, client) and result "
            "(renewed, or why not)",
            ["purpose", "result"],
            registry=self.registry,
        )

    def watch_certificates(self, sources: Sources) -> None:
        """`labgate_certificate_days_left` for every certificate `sources` names, at each scrape."""
        self.registry.register(DaysLeftCollector(sources))

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: the hot path counts without the library's
        lock and validation each time."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def served_certificates(config: GatewayConfig) -> Iterator[tuple[str, Path]]:
    """What the gateway serves (to clients) and presents (to the control server), by role."""
    yield "server", config.cert
    if config.control is not None:
        yield "control-client", config.control.cert or config.cert
