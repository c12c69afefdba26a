"""Fixtures for the scpi core: the bytes the real qslib 0.15.3 client sent, and what a fake
instrument answered (shapes qslib accepted), loaded from the captures in vectors/."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

VECTORS = Path(__file__).parent / "vectors" / "qslib-0.15.3"


@dataclass(frozen=True)
class Capture:
    file: str
    conn: int
    direction: str  # "C>" client (real qslib bytes) or "S>" server
    data: bytes


def load_captures() -> list[Capture]:
    captures = []
    for path in sorted(VECTORS.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["dir"] in ("C>", "S>"):
                # The capture stored each byte as one code point (latin-1), so binary survives.
                data = record["data"].encode("latin-1")
                captures.append(Capture(path.name, record["conn"], record["dir"], data))
    return captures


CAPTURES = load_captures()


def is_tls_junk(data: bytes) -> bool:
    """qslib's first try at TLS on a plain port: a ClientHello record (0x16 0x03 ...)."""
    return data.startswith(b"\x16\x03")


@pytest.fixture(scope="session")
def client_lines() -> list[bytes]:
    """Every real client message (C>), TLS junk excluded, each ending in b"\\n"."""
    return [c.data for c in CAPTURES if c.direction == "C>" and not is_tls_junk(c.data)]


@pytest.fixture(scope="session")
def server_lines() -> list[bytes]:
    """Every reply the fake instrument sent that answers a real command (junk echoes excluded)."""
    return [c.data for c in CAPTURES if c.direction == "S>" and b"\x16\x03" not in c.data]


@pytest.fixture(scope="session")
def tls_junk() -> list[bytes]:
    return [c.data for c in CAPTURES if c.direction == "C>" and is_tls_junk(c.data)]


@pytest.fixture(scope="session")
def client_stream(client_lines: list[bytes]) -> bytes:
    return b"".join(client_lines)


@pytest.fixture(scope="session")
def server_stream(server_lines: list[bytes]) -> bytes:
    return b"".join(server_lines)
