"""After a session that carried big messages, the gateway hands the freed heap back to the
system (glibc keeps it otherwise, once a big block has raised its mmap threshold)."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROGRAM = """
import ctypes, os
from labgate.gateway.heap import give_back_free_memory

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

# What glibc does on its own once big blocks have come and gone: serve them from the heap, and
# keep the heap when they are freed (thresholds 32 MiB and 1 GiB make that certain here).
libc = ctypes.CDLL("libc.so.6")
libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
libc.mallopt(-1, 2**30)  # M_TRIM_THRESHOLD
blocks, pins = [], []
for _ in range(20):
    blocks.append(bytearray(4 * 2**20))  # every page touched
    pins.append(bytearray(1024))
del blocks
before = rss_mib()
assert give_back_free_memory()
print(before - rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_freed_big_messages_go_back_to_the_system() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    assert float(done.stdout) > 40  # of the 80 MiB freed
