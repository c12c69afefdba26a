"""The agent's recent log lines, kept in memory for `collect_logs` (bounded: the last 1000).

The agent's log never holds a secret (tokens, keys and the local secret are never logged), so
what a collect_logs job sends is what stderr showed.
"""

from __future__ import annotations

import logging
from collections import deque

MAX_LINES = 1000
FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


class LogTail(logging.Handler):
    def __init__(self, lines: int = MAX_LINES) -> None:
        super().__init__(level=logging.INFO)
        self.lines: deque[str] = deque(maxlen=lines)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(FORMAT.format(record))
        except Exception:  # a log line that cannot be formatted is left out, not raised
            self.handleError(record)

    def tail(self, lines: int, max_bytes: int) -> str:
        """The last `lines` lines, cut from the front to at most `max_bytes` of UTF-8."""
        text = "\n".join(list(self.lines)[-lines:])
        data = text.encode("utf-8")
        if len(data) > max_bytes:
            data = data[-max_bytes:]
            text = data.decode("utf-8", errors="ignore")
        return text


_TAIL: LogTail | None = None


def log_tail() -> LogTail:
    """The process's one tail, attached to the `labgate.agent` logger on first use."""
    global _TAIL
    if _TAIL is None:
        _TAIL = LogTail()
        logging.getLogger("labgate.agent").addHandler(_TAIL)
    return _TAIL
