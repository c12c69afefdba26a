"""A simulator in a child process, for callers that cannot share a process with it.

qslib's compiled core keeps the GIL while it waits on its socket, so a simulator on a thread of
the same process never gets to answer: tests that drive qslib use `run_in_process`. The child
runs `serve` (the same code path as `labgate sim`), prints its ready line, and stops on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labgate.instrument.commandlog import read_log
from labgate.instrument.config import SimulatorConfig
from labgate.instrument.errors import SimulatorError
from labgate.instrument.passwords import render_secrets
from labgate.instrument.storage import write_atomically

CHILD_SECRETS = "child-secrets.toml"
CHILD_CONFIG = "child-config.json"
START_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorProcess:
    """A simulator running in a child process; the same read-side names as `RunningSimulator`."""

    plain: tuple[str, int] | None
    tls: tuple[str, int] | None
    legacy: tuple[str, int] | None
    tls_cert: Path
    command_log: Path
    state_dir: Path
    pid: int

    def received(self) -> list[dict[str, Any]]:
        return read_log(self.command_log)

    @property
    def peak_connections(self) -> int:
        status = json.loads((self.state_dir / "status.json").read_text())
        return int(status["peak_connections"])


def config_document(config: SimulatorConfig, secrets_file: Path | None) -> dict[str, Any]:
    return {
        "state_dir": str(config.state_dir),
        "host": config.host,
        "plain_port": config.plain_port,
        "tls_port": config.tls_port,
        "legacy_port": config.legacy_port,
        "secrets_file": str(secrets_file) if secrets_file else None,
        "access_limit": config.access_limit.label,
        "max_connections": config.max_connections,
        "idle_timeout": config.idle_timeout,
        "time_scale": config.time_scale,
        "cert": str(config.cert) if config.cert else None,
        "key": str(config.key) if config.key else None,
    }


def config_from(document: dict[str, Any]) -> SimulatorConfig:
    from labgate.scpi.access import AccessLevel

    def path(key: str) -> Path | None:
        return Path(document[key]) if document[key] else None

    return SimulatorConfig(
        state_dir=Path(document["state_dir"]),
        host=document["host"],
        plain_port=document["plain_port"],
        tls_port=document["tls_port"],
        legacy_port=document["legacy_port"],
        access_limit=AccessLevel.parse(document["access_limit"]),
        max_connections=document["max_connections"],
        idle_timeout=document["idle_timeout"],
        time_scale=document["time_scale"],
        secrets_file=path("secrets_file"),
        cert=path("cert"),
        key=path("key"),
    )


@contextlib.contextmanager
def run_in_process(config: SimulatorConfig) -> Iterator[SimulatorProcess]:
    """Start the simulator in a child process; stop it (SIGTERM) when the block ends."""
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secrets_file = config.secrets_file
    if config.passwords:
        # Passwords travel in a 0600 file, never on a command line another user could read.
        secrets_file = config.state_dir / CHILD_SECRETS
        write_atomically(secrets_file, render_secrets(config.passwords), mode=0o600)
    config_path = config.state_dir / CHILD_CONFIG
    document = config_document(config, secrets_file)
    write_atomically(config_path, json.dumps(document).encode(), mode=0o600)
    child = subprocess.Popen(
        [sys.executable, "-m", "labgate.instrument", str(config_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise SimulatorError(f"simulator process exited with {child.wait()} before ready")
        ready = json.loads(line)
        yield SimulatorProcess(
            plain=_address(ready["plain"]),
            tls=_address(ready["tls"]),
            legacy=_address(ready["legacy"]),
            tls_cert=Path(ready["tls_cert"]),
            command_log=config.state_dir / "commands.jsonl",
            state_dir=config.state_dir,
            pid=child.pid,
        )
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def _address(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: list[str]) -> int:
    from labgate.instrument.serving import serve_until_signalled

    document = json.loads(Path(argv[1]).read_text())
    return serve_until_signalled(config_from(document))
