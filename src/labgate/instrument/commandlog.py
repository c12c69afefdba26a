"""The command log: one JSON object a line for every command the simulator received.

Tests read it to prove what reached the instrument (and, later, what a gateway kept from it).
Bodies are not copied: a 64 MiB file upload would swamp the log; their tag and size are kept.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

# Raw command text is kept up to this many characters; enough for any status query or protocol.
RAW_LIMIT = 4096


class CommandLog:
    """Appends entries to `path`; safe to call from the event loop and from bridge threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._handle = path.open("a", encoding="utf-8")

    def record(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            if self._handle.closed:
                return
            # One write per line and a flush, so a reader never sees half an entry.
            self._handle.write(line)
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            self._handle.close()


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every complete entry in the log at `path` (a missing log is an empty one)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entries.append(json.loads(line))
    return entries
