"""`labgate instrument setup`: a dry run changes nothing, --apply sets the instrument's own limits
and secrets so that it refuses, to someone who goes around the gateway, what the gateway refuses,
a second run changes nothing, and no secret reaches the output or the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.gateway.config import load_config
from labgate.gateway.upstream import connect, highest_level
from labgate.instrument import SimulatorConfig, run_in_thread
from labgate.scan.budget import Limits
from labgate.scan.scanner import scan_instrument
from labgate.scan.targets import Target
from labgate.scpi.access import AccessLevel
from labgate.scpi.framing import Decoder
from labgate.scpi.framing import Limits as FramingLimits
from labgate.scpi.messages import Ok, Reply, parse_reply

from .conftest import Pki

FULL_PASSWORD = "the-instrument-s-own-full-password"
WEAK = "admin"


@pytest.fixture
def instrument(tmp_path: Path) -> Iterator[Any]:
    config = SimulatorConfig(
        state_dir=tmp_path / "sim",
        plain_port=0,
        tls_port=None,
        legacy_port=None,
        passwords={FULL_PASSWORD: AccessLevel.FULL, WEAK: AccessLevel.ADMINISTRATOR},
        access_limit=AccessLevel.OBSERVER,
    )
    with run_in_thread(config) as sim:
        yield sim


def _config(directory: Path, pki: Pki, sim: Any, *, allow_full: bool = True) -> Path:
    secret = directory / "instrument.secret"
    secret.write_text(FULL_PASSWORD + "\n")
    secret.chmod(0o600)
    host, port = sim.plain
    path = directory / "gateway.toml"
    path.write_text(f"""
[gateway]
cert = "{pki.gateway_crt}"
key = "{pki.gateway_key}"
client_ca = "{pki.root}"
audit_log = "audit.jsonl"
metrics_listen = "127.0.0.1:0"
unsafe_allow_full = {"true" if allow_full else "false"}

[[instrument]]
name = "qs5"
listen = "127.0.0.1:0"
upstream = "plain://{host}:{port}"
password_file = "instrument.secret"

[[grant]]
identity = "labgate:user:alice"
instrument = "qs5"
level = "Controller"
""")
    return path


class Direct:
    """Someone who reaches the instrument without the gateway."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.decoder = Decoder(FramingLimits())
        self.waiting: list[bytes] = []
        self.ident = 0
        self.next()  # READy

    def next(self) -> bytes:
        while not self.waiting:
            self.waiting += self.decoder.feed(self.sock.recv(65536))
        return self.waiting.pop(0)

    def ask(self, line: str) -> Reply:
        self.ident += 1
        self.sock.sendall(f"{self.ident} {line}\n".encode())
        while True:
            reply = parse_reply(self.next())
            if getattr(reply, "ident", None) == self.ident:
                return reply

    def login(self, password: str) -> bool:
        challenge = self.ask("CHAL?")
        assert isinstance(challenge, Ok)
        answer = hmac.new(password.encode(), challenge.text.strip().encode(), hashlib.md5)
        return isinstance(self.ask(f"AUTH {answer.hexdigest()}"), Ok)

    def close(self) -> None:
        self.sock.close()


def _direct(sim: Any) -> Direct:
    return Direct(sim.plain)


def test_a_dry_run_prints_the_change_and_makes_none(
    tmp_path: Path, pki: Pki, instrument: Any
) -> None:
    config = _config(tmp_path, pki, instrument)
    result = CliRunner().invoke(app, ["instrument", "setup", "qs5", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "-accessLimits.default = Observer" in result.output
    assert "+accessLimits.default = Guest" in result.output
    assert "-secrets: Administrator x1, Full x1" in result.output
    assert "+secrets: Controller x1" in result.output and "Full x1 (new" in result.output
    assert "dry run" in result.output
    # Nothing changed: the old passwords still work, the password-free limit is still Observer.
    direct = _direct(instrument)
    assert direct.login(WEAK)
    direct.close()
    assert isinstance(_direct(instrument).ask("ACC Observer"), Ok)
    assert (tmp_path / "instrument.secret").read_text().strip() == FULL_PASSWORD
    assert not (tmp_path / "instrument.secret.full").exists()


def test_apply_closes_the_way_around_the_gateway_and_a_second_run_changes_nothing(
    tmp_path: Path, pki: Pki, instrument: Any
) -> None:
    config = _config(tmp_path, pki, instrument)
    before = scan_instrument(
        Target(host="127.0.0.1", ports=(instrument.plain[1],)), limits=Limits(per_second=20)
    )
    assert {"LG-SCPI-002", "LG-SCPI-003"} <= {f.id for f in before.findings}

    runner = CliRunner()
    result = runner.invoke(app, ["instrument", "setup", "qs5", "--config", str(config), "--apply"])
    assert result.exit_code == 0, result.output
    operating = (tmp_path / "instrument.secret").read_text().strip()
    full = (tmp_path / "instrument.secret.full").read_text().strip()
    for path in (tmp_path / "instrument.secret", tmp_path / "instrument.secret.full"):
        assert path.stat().st_mode & 0o777 == 0o600
    assert operating != FULL_PASSWORD and len(operating) >= 24 and operating != full

    # Around the gateway: the old passwords are gone, nothing above Guest without one.
    for old in (FULL_PASSWORD, WEAK):
        direct = _direct(instrument)
        assert not direct.login(old)
        assert not isinstance(direct.ask("ACC Observer"), Ok)
        direct.close()
    # Even the gateway's own secret reaches no higher than the highest grant (Controller).
    direct = _direct(instrument)
    assert direct.login(operating)
    assert isinstance(direct.ask("ACC Controller"), Ok)
    refused = direct.ask("ACC Administrator")
    assert not isinstance(refused, Ok)
    direct.close()

    # The gateway logs in with the file it reads, at the grant's level.
    loaded = load_config(config)

    async def gateway_login() -> AccessLevel:
        upstream = await connect(loaded.instruments[0], limits=FramingLimits())
        try:
            return await highest_level(upstream, loaded.instruments[0], up_to=AccessLevel.FULL)
        finally:
            await upstream.close()

    assert asyncio.run(gateway_login()) is AccessLevel.CONTROLLER

    # No secret in the output, the audit log or the simulator's command log.
    audit = (tmp_path / "audit.jsonl").read_text()
    steps = [json.loads(line).get("step") for line in audit.splitlines()]
    steps = [step for step in steps if step is not None]
    assert steps[-1] == "done" and "secrets_set" in steps and "limit_set" in steps
    commands = instrument.command_log.read_text()
    for secret in (operating, full, FULL_PASSWORD):
        assert secret not in result.output and secret not in audit and secret not in commands

    # The scan agrees: no password-free level, no weak password.
    after = scan_instrument(
        Target(host="127.0.0.1", ports=(instrument.plain[1],)), limits=Limits(per_second=20)
    )
    assert not {"LG-SCPI-002", "LG-SCPI-003"} & {f.id for f in after.findings}

    # A second run: nothing to change, and --apply leaves the secrets as they are.
    again = runner.invoke(app, ["instrument", "setup", "qs5", "--config", str(config), "--apply"])
    assert again.exit_code == 0, again.output
    assert "nothing to change" in again.output
    assert (tmp_path / "instrument.secret").read_text().strip() == operating
    assert (tmp_path / "instrument.secret.full").read_text().strip() == full


def test_setup_without_unsafe_allow_full_is_refused(
    tmp_path: Path, pki: Pki, instrument: Any
) -> None:
    config = _config(tmp_path, pki, instrument, allow_full=False)
    result = CliRunner().invoke(
        app, ["instrument", "setup", "qs5", "--config", str(config), "--apply"]
    )
    assert result.exit_code == 1
    assert "unsafe_allow_full" in result.output
    assert _direct(instrument).login(WEAK)  # untouched


def test_a_password_that_does_not_give_full_is_named_not_shown(
    tmp_path: Path, pki: Pki, instrument: Any
) -> None:
    config = _config(tmp_path, pki, instrument)
    (tmp_path / "instrument.secret").write_text(WEAK + "\n")  # Administrator only
    result = CliRunner().invoke(app, ["instrument", "setup", "qs5", "--config", str(config)])
    assert result.exit_code == 1
    assert "Full" in result.output and "instrument.secret" in result.output
    assert WEAK not in result.output.replace("labgate", "")


def test_an_unknown_instrument_is_named(tmp_path: Path, pki: Pki, instrument: Any) -> None:
    config = _config(tmp_path, pki, instrument)
    result = CliRunner().invoke(app, ["instrument", "setup", "qs9", "--config", str(config)])
    assert result.exit_code == 1
    assert "'qs9'" in result.output and "qs5" in result.output


def test_with_secure_full_on_the_operating_secret_stops_at_controller(
    tmp_path: Path, pki: Pki, instrument: Any
) -> None:
    # An Administrator grant, but [secure] full caps every network session at Controller: the
    # gateway's own secret on the instrument then reaches Controller only, so the instrument
    # refuses Administrator too, even to a session that got past the gateway's cap.
    config = _config(tmp_path, pki, instrument)
    config.write_text(
        config.read_text()
        + '\n[[grant]]\nidentity = "labgate:user:adam"\ninstrument = "qs5"\n'
        + 'level = "Administrator"\n\n[secure]\nfw = false\n'
    )
    result = CliRunner().invoke(app, ["instrument", "setup", "qs5", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "+secrets: Controller x1" in result.output
