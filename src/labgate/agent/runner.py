"""`labgate agent run`: the state machine of one start, from unlinked to linked and kept so.

    start -> linked?   yes: upkeep (refresh, renew) and jobs (labgate.agent.jobs) until stopped
             no:       fresh instance id and secret, local page up, then
                       discovery (own address local and no --link-code) or the code flow;
                       linked: local page down, upkeep; window over: idle, page answers 410

One JSON line on stdout says the agent is ready; everything else goes to the log (stderr).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from labgate.agent import codeflow, discovery
from labgate.agent.controlclient import ControlClient, origin_of, tls_context
from labgate.agent.errors import InvalidOption
from labgate.agent.jobs.builtin import GatewayTarget
from labgate.agent.jobs.poller import JobPoller
from labgate.agent.locality import Network, default_networks, is_local, parse_address
from labgate.agent.localpage import Listener, LocalPage
from labgate.agent.logtail import log_tail
from labgate.agent.reasons import Reason, event
from labgate.agent.secret import LocalSecret, new_instance_id
from labgate.agent.store import SERVER_CA, Linked, Store
from labgate.agent.upkeep import Upkeep
from labgate.agent.window import DEFAULT_ANNOUNCEMENTS, Window

DEFAULT_LISTEN = "127.0.0.1:46001"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentOptions:
    server: str
    server_ca: Path
    data: Path
    model: str = "labgate-agent"
    serial: str = ""
    local_listen: str = DEFAULT_LISTEN
    local_networks: tuple[Network, ...] = field(default_factory=default_networks)
    link_code: bool = False
    announcements: int = DEFAULT_ANNOUNCEMENTS
    # instrument_action jobs: INSTRUMENT=HOST:PORT entries and the gateway's CA.
    gateway: tuple[str, ...] = ()
    gateway_ca: Path | None = None


def split_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) with HOST an IP literal of one interface."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidOption(f"--local-listen: {text!r} is not HOST:PORT")
    address = parse_address(host)
    if address is None or not host:
        raise InvalidOption(f"--local-listen: {host!r} is not an IP address")
    if address.is_unspecified:
        raise InvalidOption(
            f"--local-listen: {host} listens everywhere; name the one interface address the "
            "local page should serve (the agent announces it)"
        )
    return str(address), int(port_text)


def gateway_target(entries: tuple[str, ...], ca: Path | None) -> GatewayTarget | None:
    """`--gateway NAME=HOST:PORT ...` with `--gateway-ca`, or None when there is no gateway."""
    if not entries:
        if ca is not None:
            raise InvalidOption("--gateway-ca: no --gateway INSTRUMENT=HOST:PORT given")
        return None
    if ca is None:
        raise InvalidOption(
            "--gateway: needs --gateway-ca (the CA the gateway's certificate is from)"
        )
    instruments: dict[str, tuple[str, int]] = {}
    for entry in entries:
        name, sep, address = entry.partition("=")
        if not sep or not name or not name.isprintable() or len(name) > 100:
            raise InvalidOption(f"--gateway: {entry!r} is not INSTRUMENT=HOST:PORT")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise InvalidOption(f"--gateway: {address!r} is not HOST:PORT")
        instruments[name] = (host.strip("[]"), int(port))
    return GatewayTarget(instruments=instruments, ca=ca)


def _printable(value: str, name: str) -> str:
    if not 1 <= len(value) <= 64 or not value.isprintable():
        raise InvalidOption(f"--{name}: {value!r} must be 1 to 64 printable characters")
    return value


class Agent:
    def __init__(self, options: AgentOptions, *, out: TextIO | None = None) -> None:
        self.options = options
        self.out = out or sys.stdout
        self.store = Store(options.data)
        self.origin = origin_of(options.server)
        self.hostname = (socket.gethostname() or "device")[:64]
        self.model = _printable(options.model, "model")
        self.serial = _printable(options.serial or self.hostname, "serial")
        self.host, self.port = split_listen(options.local_listen)
        self.gateway = gateway_target(options.gateway, options.gateway_ca)
        self.status: dict[str, Any] = {"state": "starting"}
        self.on_ready: Callable[[dict[str, Any]], None] | None = None
        self._ready_said = False

    # -- status -------------------------------------------------------------------------
    def set_status(self, **values: Any) -> None:
        self.status.update(values)
        self.status["updated_at"] = datetime.now(UTC).isoformat()
        self.store.save_status(dict(self.status))

    def say_ready(self) -> None:
        if self._ready_said:
            return
        self._ready_said = True
        line = {k: self.status.get(k) for k in ("state", "instance_id", "local", "code")}
        if self.status.get("device_id"):
            line["device_id"] = self.status["device_id"]
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    def stopped(self) -> None:
        """Stopped (SIGTERM, Ctrl-C): status says so, and this start's instance id is over."""
        if self.status.get("state") not in (None, "starting", "linked"):
            event(Reason.DISCOVERY_ENDED, "agent stopped")
            self.set_status(state="stopped", instance_id=None, local=None, code=None)

    # -- the run ------------------------------------------------------------------------
    async def run(self) -> None:
        self.store.prepare()
        ca_pem = self.options.server_ca.read_bytes()
        linked = self.store.linked()
        if linked is not None:
            stored = self.store.server_url()
            if stored.rstrip("/") != self.options.server.rstrip("/"):
                raise InvalidOption(
                    f"--server: this agent is linked to {stored}; `labgate agent unlink` first"
                )
        self.store.save_server(self.options.server, ca_pem)
        if linked is None:
            linked = await self.link()
            if linked is None:
                await asyncio.Event().wait()  # discovery over, not linked: idle until stopped
                return
        self.set_status(
            state="linked",
            device_id=linked.device_id,
            not_after=linked.not_after.isoformat(),
            code=None,
        )
        self.say_ready()
        log_tail()
        upkeep = Upkeep(self.store, self.options.server, linked)
        poller = JobPoller(self.store, self.options.server, upkeep, gateway=self.gateway)
        await asyncio.gather(upkeep.run_forever(), poller.run_forever())

    async def link(self) -> Linked | None:
        instance_id = new_instance_id()
        secret = LocalSecret()
        window = Window(announcements=self.options.announcements)
        code: list[str | None] = [None]
        page = LocalPage(
            instance_id=instance_id,
            secret=secret,
            window=window,
            networks=self.options.local_networks,
            server_origin=self.origin,
            user_code=lambda: code[0],
        )
        listener = Listener(page, self.host, self.port)
        local = await listener.start()
        event(Reason.STARTED, f"unlinked; instance {instance_id}; local page http://{local}/link")
        self.set_status(
            state="unlinked", instance_id=instance_id, local=local, code=None, device_id=None
        )
        context = tls_context(self.store.path(SERVER_CA))
        try:
            async with ControlClient(self.options.server, context) as client:
                if self.options.link_code or not is_local(self.host, self.options.local_networks):
                    if not self.options.link_code:
                        event(
                            Reason.NOT_LOCAL,
                            f"own address {self.host} is outside the local "
                            "networks; no discovery, linking by code",
                        )
                    window.close(Reason.DISCOVERY_ENDED)
                    return await self._by_code(client, instance_id, local, code)
                self.say_ready()
                presence = discovery.Presence(
                    instance_id=instance_id,
                    local_address=local,
                    hostname=self.hostname,
                    model=self.model,
                    serial=self.serial,
                )
                linked = await discovery.discover(client, self.store, presence, secret, window)
                if linked is None:
                    reason = window.ended or Reason.WINDOW_CLOSED
                    self.set_status(state="unlinked", reason=reason.value, discovering=False)
                    event(
                        Reason.DISCOVERY_ENDED,
                        f"not linked ({reason.value}); restart the agent "
                        "to announce again, or run it with --link-code",
                    )
                    return None
                self._linked(linked)
                return linked
        finally:
            if window.is_open:
                window.close(Reason.DISCOVERY_ENDED)
            if self.status.get("state") == "linked":
                await listener.close()

    async def _by_code(
        self, client: ControlClient, instance_id: str, local: str, code: list[str | None]
    ) -> Linked | None:
        description = {
            "model": self.model,
            "serial": self.serial,
            "hostname": self.hostname,
            "local_address": local,
            "instance_id": instance_id,
        }

        def shown(issued: codeflow.Code) -> None:
            code[0] = issued.user_code
            self.set_status(
                code=issued.user_code,
                verification_uri=issued.verification_uri_complete or issued.verification_uri,
            )
            self.say_ready()

        linked = await codeflow.link_by_code(client, self.store, description, shown)
        if linked is None:
            self.set_status(state="unlinked", reason=Reason.ACCESS_DENIED.value, code=None)
            return None
        self._linked(linked)
        return linked

    def _linked(self, linked: Linked) -> None:
        event(
            Reason.LINKED,
            f"linked as {linked.identity}; certificate {linked.serial} until "
            f"{linked.not_after:%Y-%m-%dT%H:%MZ}",
        )
        self.set_status(
            state="linked",
            device_id=linked.device_id,
            code=None,
            not_after=linked.not_after.isoformat(),
            instance_id=None,
        )
