"""Prometheus metrics of one server, in a registry of its own (none is created at import time)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, generate_latest


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    logins: Counter
    refreshes: Counter
    denials: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
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
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
