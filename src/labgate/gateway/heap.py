"""Giving memory back to the system once a session that carried big messages has ended.

A FILE:READ? or FILE:WRITE of many megabytes passes through a few buffers of its size. glibc
serves the first such block by mapping pages of its own, but once it is freed glibc raises its
mmap threshold to that size, and later blocks come from the heap, which keeps its high-water
mark: measured with the benchmark, 90 MiB stayed resident after the bulk step, more than 500
open sessions take. Keeping the heap while such a session runs is right (its next file reuses
the pages without faulting them in again); once it has ended, `malloc_trim` hands the free
pages back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

# A session that carried a message this big gives its memory back when it ends.
BIG_MESSAGE = 1024 * 1024


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def give_back_free_memory() -> bool:
    """Return the heap's free pages to the system; False where there is no glibc to ask."""
    return bool(_TRIM(0)) if _TRIM is not None else False
