"""Prometheus metrics of one server, in a registry of its own (none is created at import time)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest

from labgate.control.layout import ca_issuing_path, ca_root_path, server_certificate_path
from labgate.pki.expiry import DaysLeftCollector, Sources


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    logins: Counter
    refreshes: Counter
    denials: Counter
    certificate_renewals: Counter

    @classmethod
    def create(cls, *, certificates: Sources | None = None) -> Metrics:
        """`certificates`: what the server serves, for `labgate_certificate_days_left`."""
        registry = CollectorRegistry()
        if certificates is not None:
            registry.register(DaysLeftCollector(certificates))
        return cls(
            registry=registry,
            requests=Counter(
                "labgate_http_requests",
                "HTTP responses by method and status",
                ["method", "status"],
                registry=registry,
            ),
            logins=Counter(
                "labgate_logins", "Login attempts by outcome", ["outcome"], registry=registry
            ),
            refreshes=Counter(
                "labgate_refreshes",
                "Refresh-token uses by outcome",
                ["outcome"],
                registry=registry,
            ),
            denials=Counter(
                "labgate_token_denials",
                "Access tokens refused, by reason",
                ["reason"],
                registry=registry,
            ),
            certificate_renewals=Counter(
                "labgate_server_certificate_renewals",
                "Looks at the server's own certificate that renewed it or failed to, by result",
                ["result"],
                registry=registry,
            ),
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def served_certificates(data_dir: Path) -> Iterator[tuple[str, Path]]:
    """The TLS chain the server serves (its certificate and the issuing CA), its CA's root, and
    the issuing CA that signs from now on (after a rotation not yet the one in the chain)."""
    yield "server", server_certificate_path(data_dir)
    yield "ca-root", ca_root_path(data_dir)
    yield "ca-issuing", ca_issuing_path(data_dir)
