"""The demo stack: a certificate authority, the instrument simulator, the gateway in front of it,
and the certificates a person needs to reach it with qslib; all on free loopback ports, in one
state directory.

Each part runs as its own `labgate` sub-command (the same commands a deployment runs), so the
demo shows the real thing, and stopping it is stopping processes in the reverse order.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from labgate.demo.children import Child, start
from labgate.pki import CertificateAuthority, Profile
from labgate.pki.atomic import PRIVATE, PUBLIC, write_atomic

# The instrument's name: also the TLS server name qslib asks for, and the gateway's SNI key.
INSTRUMENT = "qs5-demo"
LEGACY_INSTRUMENT = "qs5-legacy"
# The person running the demo gets Controller, the level qslib asks for by default; a second
# identity gets Observer, to show a command being refused before it reaches the instrument.
OPERATOR = "operator"
OBSERVER = "observer"


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
    simulator: dict[str, object]
    gateway: dict[str, object]
    identities: tuple[Identity, ...]
    audit_log: Path
    logs: Path
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
            "simulator": self.simulator,
            "gateway": self.gateway,
            "identities": {
                i.name: {"uri": i.uri, "level": i.level, "pem": str(i.pem)} for i in self.identities
            },
            "audit_log": str(self.audit_log),
            "logs": str(self.logs),
            "pids": {c.name: c.process.pid for c in self.children},
        }


@contextmanager
def running(state_dir: Path) -> Iterator[RunningDemo]:
    """Start every part; stop them all, newest first, when the block ends."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    with ExitStack() as stack:
        ca = _certificate_authority(state_dir / "ca")
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
        ca.issue(Profile.SERVER, INSTRUMENT, dns=[INSTRUMENT, LEGACY_INSTRUMENT, "localhost"],
                 ips=["127.0.0.1"]).write(gateway_dir / "gateway")  # fmt: skip
        write_atomic(gateway_dir / "root.crt", ca.root_pem, mode=PUBLIC)
        write_atomic(gateway_dir / "instrument.secret", instrument_password, mode=PRIVATE)
        identities = tuple(
            _identity(ca, name, level, state_dir / "you")
            for name, level in ((OPERATOR, "Controller"), (OBSERVER, "Observer"))
        )
        pin = _spki_pin(Path(str(simulator.ready["tls_cert"])))
        config = _gateway_config(simulator.ready, pin, identities)
        write_atomic(gateway_dir / "gateway.toml", config.encode(), mode=PUBLIC)
        gateway = start("gateway", ["gateway", "--config", str(gateway_dir / "gateway.toml")],
                        log_dir=logs)  # fmt: skip
        stack.callback(gateway.stop)

        yield RunningDemo(
            state_dir=state_dir,
            root_ca=gateway_dir / "root.crt",
            simulator=simulator.ready,
            gateway=gateway.ready,
            identities=identities,
            audit_log=gateway_dir / "audit.jsonl",
            logs=logs,
            children=(simulator, gateway),
        )


def _certificate_authority(directory: Path) -> CertificateAuthority:
    if (directory / "root.crt").exists():
        return CertificateAuthority.open(directory, passphrase=None)
    # Unencrypted keys: a demo CA on a throw-away state directory, said so in the CA's own
    # warning and in the demo's output. A real CA uses `labgate ca init` with a passphrase.
    return CertificateAuthority.init(
        directory, name="labgate demo CA", passphrase=None, unencrypted=True
    )


def _instrument_secrets(state_dir: Path) -> bytes:
    """The simulated instrument's Controller password, known to the gateway alone."""
    password = secrets.token_hex(16)
    toml = f'[[password]]\nlevel = "Controller"\nsecret = "{password}"\n'
    write_atomic(state_dir / "instrument-secrets.toml", toml.encode(), mode=PRIVATE)
    return password.encode()


def _identity(ca: CertificateAuthority, name: str, level: str, directory: Path) -> Identity:
    directory.mkdir(exist_ok=True, mode=0o700)
    issued = ca.issue(Profile.CLIENT, name, days=1)
    issued.write(directory / name, combined=True)
    assert issued.identity is not None
    return Identity(name=name, uri=issued.identity, level=level, pem=directory / f"{name}.pem")


def _spki_pin(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _gateway_config(sim: dict[str, object], pin: str, identities: tuple[Identity, ...]) -> str:
    grants = "".join(
        f'\n[[grant]]\nidentity = "{i.uri}"\ninstrument = "*"\nlevel = "{i.level}"\n'
        for i in identities
    )
    return f"""# Written by `labgate demo`.
[gateway]
cert = "gateway.crt"
key = "gateway.key"
client_ca = "root.crt"
audit_log = "audit.jsonl"
metrics_listen = "127.0.0.1:0"

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
{grants}"""


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "labgate" / "demo"
