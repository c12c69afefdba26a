"""The command log: one JSON object a line for every command the simulator received.

Tests read it to prove what reached the instrument (and, later, what a gateway kept from it).
Bodies are not copied: a 64 MiB file upload would swamp the log; their tag and size are kept.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

# Raw command text is kept up to this many characters; enough for any status query or protocol.
RAW_LIMIT = 4096


class CommandLog:
    """Appends entries to `path`; safe to call from the event loop and from bridge threads.

    Each entry is written before the command runs, so by the time a client holds a reply, the
    entry is in the file. A line goes out in one `write` on an O_APPEND descriptor: a buffered
    text file would split a line longer than its buffer (a junk command shown with escapes runs
    past 8 KiB) into several writes, and a reader between them saw half an entry.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode(
            errors="backslashreplace"
        )
        with self._lock:
            if self._fd is None:
                return
            view = memoryview(line)
            while view:  # a regular file takes it all at once; loop in case it does not
                view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every complete entry in the log at `path` (a missing log is an empty one).

    A last line without its newline is an entry still being written: it is left for the next
    read rather than parsed half-way.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
