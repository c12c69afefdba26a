"""`labgate secure --check` for a gateway configuration: each switch that is on, re-verified from
what can be observed, not from what the file says.

- `fw`: the sockets listening on the configured ports, as the kernel lists them, are exactly the
  configured addresses (one on every address, or on another, is drift), and each configured one
  is listening.
- `full`: no grant's effective level (the grant table, then the mode's cap, as admission applies
  them) is above Controller, and the running gateway says it has `full` on: its latest
  `gateway_start` or `reload` audit record names the switches in force (a reload that failed keeps
  the old ones, which is exactly the drift to catch).
- every switch on in the file is on in the running gateway (the same record).
"""

from __future__ import annotations

import json
from pathlib import Path

from labgate.gateway.config import GatewayConfig
from labgate.gateway.grants import Granted, GrantTable
from labgate.posture.listening import (
    Configured,
    Listening,
    NotListable,
    compare,
    listening,
)
from labgate.posture.mode import LEGACY_NOTICE, NETWORK_CEILING, cap_level
from labgate.posture.report import CheckReport, Finding, add_comparison

# How much of the audit log's end is read for the latest start or reload record: records are a
# few hundred bytes, and a gateway writes one of these at every start and reload.
AUDIT_TAIL = 8 * 1024 * 1024


def check_gateway(config: GatewayConfig, *, sockets: set[Listening] | None = None) -> CheckReport:
    """The check; `sockets` defaults to the kernel's table (tests may pass one)."""
    mode = config.secure
    report = CheckReport(on=mode.describe())
    if not mode.present:
        report.notes.append(LEGACY_NOTICE)
    if mode.pwd:
        report.notes.append("pwd: applies to the control server's configuration, not a gateway's")
    if mode.fw:
        _check_listeners(config, sockets, report)
    if mode.full:
        _check_grants(config, report)
    if mode.enabled():
        _check_running(config, report)
    return report


def _check_listeners(
    config: GatewayConfig, sockets: set[Listening] | None, report: CheckReport
) -> None:
    try:
        found = listening() if sockets is None else sockets
    except NotListable as exc:
        report.drift.append(Finding(switch="fw", text=f"cannot list listening sockets: {exc}"))
        return
    configured = [
        Configured(key=f"instrument[{i}].listen", host=ins.listen.host, port=ins.listen.port)
        for i, ins in enumerate(config.instruments)
    ]
    if config.metrics_listen is not None:
        endpoint = config.metrics_listen
        configured.append(
            Configured(key="gateway.metrics_listen", host=endpoint.host, port=endpoint.port)
        )
    add_comparison(report, compare(configured, found))


def _check_grants(config: GatewayConfig, report: CheckReport) -> None:
    table = GrantTable.of(config.grants, allow_full=config.unsafe_allow_full)
    names = [ins.name for ins in config.instruments]
    above = 0
    for grant in config.grants:
        for name in names if grant.instrument == "*" else [grant.instrument]:
            decision = table.decide(grant.identity, name)
            if not isinstance(decision, Granted):
                continue
            level = cap_level(config.secure, decision.level).level
            if level > NETWORK_CEILING:
                above += 1
                report.drift.append(
                    Finding(
                        switch="full",
                        text=f"{grant.identity} on {name}: {level.label} "
                        "would be effective over the network",
                    )
                )
    if not above:
        report.verified.append(
            Finding(
                switch="full",
                text=f"no grant above {NETWORK_CEILING.label} is effective "
                f"({len(config.grants)} grants)",
            )
        )


def _latest_posture(audit_log: Path) -> tuple[str, int | None] | None:
    """The switches the running gateway last said it had, and that record's seq."""
    with audit_log.open("rb") as file:
        file.seek(0, 2)
        size = file.tell()
        file.seek(max(0, size - AUDIT_TAIL))
        tail = file.read()
    for line in reversed(tail.splitlines()):
        if b'"gateway_start"' not in line and b'"reload"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line, or the cut at the tail's start
        if record.get("event") in ("gateway_start", "reload") and "secure" in record:
            seq = record.get("seq")
            return str(record["secure"]), seq if isinstance(seq, int) else None
    return None


def _check_running(config: GatewayConfig, report: CheckReport) -> None:
    try:
        latest = _latest_posture(config.audit_log)
    except OSError as exc:
        report.drift.append(
            Finding(
                switch="secure",
                text=f"cannot read the audit log {config.audit_log}: "
                f"{exc.strerror} (has the gateway run?)",
            )
        )
        return
    if latest is None:
        report.drift.append(
            Finding(
                switch="secure",
                text=f"{config.audit_log} has no start or reload record "
                "naming the switches in force (has this gateway version run?)",
            )
        )
        return
    running, seq = latest
    running_on = set(_switches(running))
    where = f"audit record seq {seq}" if seq is not None else "the audit log"
    for switch in config.secure.enabled():
        if switch in running_on:
            report.verified.append(
                Finding(switch=switch, text=f"the running gateway has it on ({where})")
            )
        else:
            report.drift.append(
                Finding(
                    switch=switch,
                    text=f"on in the file but off in the running gateway "
                    f"({where} says {running!r}; a reload failed or has not happened)",
                )
            )


def _switches(described: str) -> tuple[str, ...]:
    if described == "all":
        return ("pwd", "fw", "full")
    if described == "none":
        return ()
    return tuple(described.split())
