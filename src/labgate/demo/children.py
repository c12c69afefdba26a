"""Child processes of the demo: each part runs as the real `labgate` sub-command would in a
deployment, and tells us where it listens with the one JSON line it prints when ready."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class ChildFailed(RuntimeError):
    """A part did not come up; the message names it and points at its log."""


# How long a part may take to print its ready line. The server runs its migrations first and
# the simulator makes a certificate; both finish in a second or two on a quiet machine, so this
# leaves room for a loaded one without hanging a person's terminal for long.
READY_TIMEOUT_S = 60.0
# How long a part may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL if it will not go. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(name: str, args: list[str], *, log_dir: Path, env: dict[str, str] | None = None) -> Child:
    """Run `labgate ARGS` and wait for its JSON ready line on stdout; its stderr goes to a log."""
    log_path = log_dir / f"{name}.log"
    log_file: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - the child keeps it after we return
    process = subprocess.Popen(
        [sys.executable, "-m", "labgate", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_file,
        env={**os.environ, **(env or {})},
        # Its own process group, so the terminal's Ctrl-C reaches the demo alone, and the demo
        # stops the parts in order.
        start_new_session=True,
    )
    log_file.close()
    child = Child(name=name, process=process, log_path=log_path)
    try:
        child.ready = _read_ready_line(child)
    except ChildFailed:
        child.stop()
        raise
    return child


def _read_ready_line(child: Child) -> dict[str, Any]:
    stdout = child.process.stdout
    assert stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    buffered = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while b"\n" not in buffered:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildFailed(
                    f"{child.name} printed no ready line within {READY_TIMEOUT_S:.0f} s; "
                    f"see {child.log_path}"
                )
            if not selector.select(remaining):
                continue
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                raise ChildFailed(
                    f"{child.name} exited with status {child.process.wait()} before it was "
                    f"ready; see {child.log_path}"
                )
            buffered += chunk
    line = buffered.split(b"\n", 1)[0]
    try:
        ready = json.loads(line)
    except ValueError:
        raise ChildFailed(f"{child.name} printed {line[:200]!r}, not a JSON ready line") from None
    if not isinstance(ready, dict):
        raise ChildFailed(f"{child.name} printed {line[:200]!r}, not a JSON object")
    return ready
