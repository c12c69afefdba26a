"""What `labgate scan HOST[:PORT]...` is asked to scan: one instrument per host, with its ports."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from labgate.scan.errors import TargetError

# The QuantStudio's own ports: plaintext SCPI, TLS/SSLv3 SCPI, and its console.
KNOWN_PORTS = (7000, 7443, 2323)
_TARGET = re.compile(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One instrument: a host and the ports to probe, in order."""

    host: str
    ports: tuple[int, ...]


def parse_targets(texts: Sequence[str]) -> list[Target]:
    """HOST alone means its known ports; HOST:PORT adds that port. The same host named twice is
    one instrument (one budget)."""
    if not texts:
        raise TargetError("name at least one HOST or HOST:PORT to scan")
    ports: dict[str, list[int]] = {}
    for text in texts:
        match = _TARGET.fullmatch(text.strip())
        if match is None:
            raise TargetError(f"{text!r}: expected HOST, HOST:PORT or [IPv6]:PORT")
        host = match.group(1) or match.group(3)
        port_text = match.group(2) or match.group(4)
        wanted = ports.setdefault(host, [])
        if port_text is None:
            new = list(KNOWN_PORTS)
        else:
            port = int(port_text)
            if not 1 <= port <= 65535:
                raise TargetError(f"{text!r}: port {port} is not 1 to 65535")
            new = [port]
        wanted.extend(port for port in new if port not in wanted)
    return [Target(host=host, ports=tuple(found)) for host, found in ports.items()]
