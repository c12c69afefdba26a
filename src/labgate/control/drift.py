"""`labgate secure --check` for a control server's `server.toml`: each switch that is on,
re-verified from what can be observed (the settings as the server would load them, environment
included, and the sockets the kernel lists as listening)."""

from __future__ import annotations

from labgate.control.settings import ControlSettings, host_and_port
from labgate.posture.listening import Configured, Listening, NotListable, compare, listening
from labgate.posture.mode import LEGACY_NOTICE
from labgate.posture.report import CheckReport, Finding, add_comparison


def check_server(
    settings: ControlSettings, *, sockets: set[Listening] | None = None
) -> CheckReport:
    mode = settings.secure
    report = CheckReport(on=mode.describe())
    if not mode.present:
        report.notes.append(LEGACY_NOTICE)
    if mode.pwd:
        policy = settings.policy_in_force
        finding = Finding(switch="pwd", text=f"password policy in force: {policy}")
        (report.verified if policy == "enhanced" else report.drift).append(finding)
        report.verified.append(
            Finding(switch="pwd", text=f"logins idle out after {settings.user_refresh_in_force} s")
        )
    if mode.fw:
        try:
            found = listening() if sockets is None else sockets
        except NotListable as exc:
            report.drift.append(Finding(switch="fw", text=f"cannot list listening sockets: {exc}"))
        else:
            host, port = host_and_port(settings.listen)
            add_comparison(report, compare([Configured(key="listen", host=host, port=port)], found))
    if mode.full:
        report.notes.append("full: enforced by each gateway (check the gateways' configurations)")
    return report
