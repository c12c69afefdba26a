"""The demo stack: the control server (with its certificate authority), the instrument
simulator, the gateway in front of it taking its grants from the server, and the certificates a
person needs to reach it with qslib; all on free loopback ports, in one state directory.

Each part runs as its own `labgate` sub-command (the same commands a deployment runs), so the
demo shows the real thing, and stopping it is stopping processes in the reverse order.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from labgate.control import layout
from labgate.control.keystore import load_passphrase
from labgate.control.settings import ControlSettings
from labgate.demo import release as demo_release
from labgate.demo.children import READY_TIMEOUT_S, Child, ChildFailed, start
from labgate.demo.enrolment import approve_code, enrol_admin
from labgate.gateway.pins import spki_pin
from labgate.pki import CertificateAuthority, Profile
from labgate.pki.atomic import PRIVATE, PUBLIC, write_atomic

# The instrument's name: also the TLS server name qslib asks for, and the gateway's SNI key.
INSTRUMENT = "qs5-demo"
LEGACY_INSTRUMENT = "qs5-legacy"
# The person running the demo gets Controller, the level qslib asks for by default; a second
# identity gets Observer, to show a command being refused before it reaches the instrument.
OPERATOR = "operator"
OBSERVER = "observer"
# The gateway's name at the control server: its certificate says labgate:gateway:<name>.
SITE = "demo-site"
# The gateway follows its grant bundle by long poll (a change shows within about a second);
# this is the longest it waits before retrying after a failed fetch (a site keeps the minute).
BUNDLE_POLL_S = 5
# The demo's device: its model is what the demo's signed release lists as compatible.
DEVICE_MODEL = "QuantStudio-sim"
# The demo's server tells devices to ask for jobs this often (a site keeps the default minute).
JOBS_POLL_S = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    name: str
    uri: str
    level: str
    pem: Path  # certificate chain and key in one file: qslib's client_certificate_path


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningDemo:
    state_dir: Path
    root_ca: Path
    server: dict[str, object]
    admin_password: Path
    simulator: dict[str, object]
    gateway: dict[str, object]
    identities: tuple[Identity, ...]
    audit_log: Path
    logs: Path
    agent: dict[str, object]
    release: dict[str, object]
    children: tuple[Child, ...]

    def instrument_address(self, name: str = INSTRUMENT) -> tuple[str, int]:
        instruments = self.gateway["instruments"]
        assert isinstance(instruments, dict)
        host, _, port = str(instruments[name]).rpartition(":")
        return host.strip("[]"), int(port)

    def summary(self) -> dict[str, object]:
        """What a script needs to use the demo: one JSON-ready mapping."""
        return {
            "state_dir": str(self.state_dir),
            "root_ca": str(self.root_ca),
            "server": self.server,
            "admin_password": str(self.admin_password),
            "simulator": self.simulator,
            "gateway": self.gateway,
            "identities": {
                i.name: {"uri": i.uri, "level": i.level, "pem": str(i.pem)} for i in self.identities
            },
            "audit_log": str(self.audit_log),
            "logs": str(self.logs),
            "agent": self.agent,
            "release": self.release,
            "pids": {c.name: c.process.pid for c in self.children},
        }


@contextmanager
def running(state_dir: Path) -> Iterator[RunningDemo]:
    """Start every part; stop them all, newest first, when the block ends."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    with ExitStack() as stack:
        server_dir = state_dir / "server"
        if not (server_dir / "server.toml").exists():
            _run_once("server-init", ["server", "init", "--data", str(server_dir)], log_dir=logs)
        release = demo_release.prepare(state_dir, DEVICE_MODEL)
        server = start(
            "server",
            ["server", "run", "--data", str(server_dir), "--listen", "127.0.0.1:0"],
            log_dir=logs,
            env={**release.server_env(), "LABGATE_JOBS_POLL_SECONDS": str(JOBS_POLL_S)},
        )
        stack.callback(server.stop)
        admin_password = state_dir / "admin-password"
        enrol_admin(
            url=str(server.ready["url"]),
            server_ca=layout.ca_root_path(server_dir),
            one_time_password=server_dir / "admin-password",
            new_password=admin_password,
            grants={
                f"labgate:user:{OPERATOR}": "Controller",
                f"labgate:user:{OBSERVER}": "Observer",
            },
        )

        ca = _certificate_authority(server_dir)
        stack.callback(ca.close)
        instrument_password = _instrument_secrets(state_dir)
        simulator = start(
            "simulator",
            [
                "sim",
                "--plain-port", "0",
                "--tls-port", "0",
                "--legacy-port", "0",
                "--access-limit", "Guest",
                "--secrets", str(state_dir / "instrument-secrets.toml"),
                "--state-dir", str(state_dir / "instrument"),
            ],
            log_dir=logs,
        )  # fmt: skip
        stack.callback(simulator.stop)

        gateway_dir = state_dir / "gateway"
        gateway_dir.mkdir(exist_ok=True, mode=0o700)
        # One certificate serves the gateway's clients and identifies it to the control server.
        gateway_cert = ca.issue(
            Profile.GATEWAY,
            SITE,
            dns=[INSTRUMENT, LEGACY_INSTRUMENT, "localhost"],
            ips=["127.0.0.1"],
            destination=gateway_dir / "gateway",
        )
        with ca.handing_out(gateway_cert):
            gateway_cert.write(gateway_dir / "gateway")
        write_atomic(gateway_dir / "root.crt", ca.root_pem, mode=PUBLIC)
        write_atomic(gateway_dir / "instrument.secret", instrument_password, mode=PRIVATE)
        identities = (
            _identity(ca, OPERATOR, "Controller", state_dir / "you"),
            _identity(ca, OBSERVER, "Observer", state_dir / "you"),
        )
        pin = _spki_pin(Path(str(simulator.ready["tls_cert"])))
        config = _gateway_config(simulator.ready, pin, control_url=str(server.ready["url"]))
        write_atomic(gateway_dir / "gateway.toml", config.encode(), mode=PUBLIC)
        gateway = start(
            "gateway", ["gateway", "--config", str(gateway_dir / "gateway.toml")], log_dir=logs
        )
        stack.callback(gateway.stop)
        demo_release.provision(state_dir / "device", release, DEVICE_MODEL)
        agent, device = _linked_agent(state_dir, server.ready, server_dir, admin_password, logs)
        stack.callback(agent.stop)
        installed = _installed_release(release, server.ready, server_dir, admin_password, device)

        yield RunningDemo(
            state_dir=state_dir,
            root_ca=gateway_dir / "root.crt",
            server=server.ready,
            admin_password=admin_password,
            simulator=simulator.ready,
            gateway=gateway.ready,
            identities=identities,
            audit_log=gateway_dir / "audit.jsonl",
            logs=logs,
            agent=device,
            release=installed,
            children=(server, simulator, gateway, agent),
        )


def _linked_agent(
    state_dir: Path,
    server: dict[str, object],
    server_dir: Path,
    admin_password: Path,
    logs: Path,
) -> tuple[Child, dict[str, object]]:
    """`labgate agent run --link-code` for a simulated device, its code approved by the
    administrator as a person would; returns once it holds its certificate (an agent linked by
    an earlier run starts linked)."""
    data = state_dir / "device"
    agent = start(
        "agent",
        [
            "agent", "run", "--link-code",
            "--server", str(server["url"]),
            "--server-ca", str(layout.ca_root_path(server_dir)),
            "--data", str(data),
            "--model", DEVICE_MODEL, "--serial", "SIM-0001",
            "--local-listen", "127.0.0.1:0",
        ],
        log_dir=logs,
    )  # fmt: skip
    code = agent.ready.get("code")
    if agent.ready.get("state") != "linked" and isinstance(code, str):
        approve_code(
            url=str(server["url"]),
            server_ca=layout.ca_root_path(server_dir),
            admin_password=admin_password,
            user_code=code,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            status = json.loads((data / "status.json").read_text())
        if status.get("state") == "linked":
            break
        if agent.process.poll() is not None:
            break
        time.sleep(0.2)
    if status.get("state") != "linked":
        agent.stop()
        raise ChildFailed(f"the demo's device agent did not link; see {logs / 'agent.log'}")
    return agent, {"data": str(data), "device_id": status.get("device_id"), "code": code}


def _installed_release(
    release: demo_release.DemoRelease,
    server: dict[str, object],
    server_dir: Path,
    admin_password: Path,
    device: dict[str, object],
) -> dict[str, object]:
    """The signed release sent to the demo's device as an install_release job, as an operator
    would; returns once the device reported it committed in its other slot."""
    job = demo_release.install_by_job(
        url=str(server["url"]),
        server_ca=layout.ca_root_path(server_dir),
        admin_password=admin_password,
        device_id=str(device["device_id"]),
        release=release,
    )
    details = job.get("status_details") or {}
    assert isinstance(details, dict)
    if job["state"] != "SUCCEEDED":
        raise ChildFailed(
            f"the demo's device did not install release {demo_release.VERSION}: job "
            f"{job['id']} is {job['state']} ({details.get('reason', 'no reason given')})"
        )
    return {
        "version": details.get("version"),
        "slot": details.get("slot"),
        "job_id": job["id"],
        "target": release.binding.target_path,
        "sha256": release.binding.sha256,
        "repository": str(release.repository.directory),
    }


def _run_once(name: str, args: list[str], *, log_dir: Path) -> None:
    """A one-shot sub-command (such as `server init`), its output kept in the part's log."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        status = subprocess.run(
            [sys.executable, "-m", "labgate", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            timeout=READY_TIMEOUT_S,
            check=False,
        ).returncode
    if status != 0:
        raise ChildFailed(f"{name} exited with status {status}; see {log_path}")


def _certificate_authority(server_dir: Path) -> CertificateAuthority:
    """The control server's own CA: one trust anchor for the server, the gateway and users."""
    passphrase = load_passphrase(ControlSettings.load(server_dir))
    return CertificateAuthority.open(layout.ca_dir(server_dir), passphrase=passphrase)


def _instrument_secrets(state_dir: Path) -> bytes:
    """The simulated instrument's Controller password, known to the gateway alone."""
    password = secrets.token_hex(16)
    toml = f'[[password]]\nlevel = "Controller"\nsecret = "{password}"\n'
    write_atomic(state_dir / "instrument-secrets.toml", toml.encode(), mode=PRIVATE)
    return password.encode()


def _identity(ca: CertificateAuthority, name: str, level: str, directory: Path) -> Identity:
    directory.mkdir(exist_ok=True, mode=0o700)
    issued = ca.issue(Profile.CLIENT, name, days=1, destination=directory / name)
    with ca.handing_out(issued):
        issued.write(directory / name, combined=True)
    assert issued.identity is not None
    return Identity(name=name, uri=issued.identity, level=level, pem=directory / f"{name}.pem")


def _spki_pin(cert_path: Path) -> str:
    """The simulator's `upstream_pin`, from the certificate file it names in its ready line."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return spki_pin(cert.public_bytes(serialization.Encoding.DER))


def _gateway_config(sim: dict[str, object], pin: str, *, control_url: str) -> str:
    return f"""# Written by `labgate demo`. Grants come from the control server's signed bundle.
[gateway]
cert = "gateway.crt"
key = "gateway.key"
client_ca = "root.crt"
audit_log = "audit.jsonl"
metrics_listen = "127.0.0.1:0"

[control]
url = "{control_url}"
gateway_name = "{SITE}"
server_ca = "root.crt"
poll_interval = {BUNDLE_POLL_S}

[[instrument]]
name = "{INSTRUMENT}"
listen = "127.0.0.1:0"
upstream = "plain://{sim["plain"]}"
password_file = "instrument.secret"

[[instrument]]
name = "{LEGACY_INSTRUMENT}"
listen = "127.0.0.1:0"
upstream = "sslv3://{sim["legacy"]}"
upstream_pin = "{pin}"
password_file = "instrument.secret"
"""


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "labgate" / "demo"
