"""Decode throughput of labgate.scpi.framing.Decoder, against a naive line splitter.

Two workloads, each fed in socket-sized reads (64 KiB and 4 KiB) and timed best-of-N:

(a) many small replies, the shapes a busy session produces (`OK n ...`, `NEXT n`, temperature
    `MESSage`s, a status `RET` answer): messages per second;
(b) large base64 blocks inside tags (`OK n <quote>` + base64 of a file + `</quote>`, as
    `FILE:READ?` answers): megabytes per second.

The baseline is the usual hand-written reader: append each read to a buffer, `split(b"\\n")`,
keep the last piece. It knows nothing of tags or limits (it cuts a base64 block into hundreds of
thousands of lines), so it is an upper bound on what line splitting costs, not a correct decoder.

Run: python bench/scpi_framing.py [--quick]
"""

import argparse
import base64
import os
import sys
import time
from collections.abc import Callable, Iterable

from labgate.scpi.framing import Decoder

TARGET_MESSAGES_PER_S = 150_000
TARGET_MB_PER_S = 300.0

SMALL_REPLIES = [
    b"OK 5 Closed\n",
    b"NEXT 7\n",
    b"OK 7\n",
    b"OK 12 ON\n",
    b"MESSage Temperature 1739920066.918 -sample=36.4,36.5,36.4,36.6,36.5,36.4 "
    b"-heatsink=31.2 -cover=104.7 -block=36.4,36.5,36.4,36.6,36.5,36.4\n",
    b"MESSage Run 1739920067.001 Stage 2\n",
    b"OK 3 -stealth=False -exclusive=False Observer\n",
    b'OK 5 Closed Down "On 39.8" "25.1 25.2 25.0 24.9 25.0 25.1" "25.0 25.0 25.0 25.0 25.0 25.0" '
    b'30.2 "-Zone1=25 -Zone2=25 -Zone3=25 -Zone4=25 -Zone5=25 -Zone6=25 -Fan1=44 -Cover=105" '
    b'"-Zone1=False -Zone2=False -Zone3=False -Zone4=False -Zone5=False -Zone6=False '
    b'-Fan1=True -Cover=False" 36.6\n',
    b'ERRor 9 [InsufficientAccess] -requiredAccess="Controller" -currentAccess="Observer" '
    b"--> OPEN requires Controller access\n",
    b"OK 6 <quote.reply>\npublic_run_complete:run_one.eds\n</quote.reply>\n",
]


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def decode_labgate(pieces: Iterable[bytes]) -> int:
    decoder = Decoder()
    count = 0
    for piece in pieces:
        count += len(decoder.feed(piece))
    decoder.close()
    return count


def decode_naive(pieces: Iterable[bytes]) -> int:
    buffer = b""
    count = 0
    for piece in pieces:
        buffer += piece
        lines = buffer.split(b"\n")
        buffer = lines.pop()
        count += len(lines)
    return count


def best_time(
    decode: Callable[[Iterable[bytes]], int], pieces: list[bytes], repeat: int
) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = decode(pieces)
        best = min(best, time.perf_counter() - start)
    return best, count


def small_stream(messages: int) -> tuple[bytes, int]:
    reps = messages // len(SMALL_REPLIES)
    return b"".join(SMALL_REPLIES) * reps, reps * len(SMALL_REPLIES)


def large_stream(file_mib: int, blocks: int) -> bytes:
    payload = base64.encodebytes(os.urandom(file_mib * 1024 * 1024))
    block = b"OK 5 <quote>\n" + payload + b"</quote>\n"
    return block * blocks


def report(title: str, unit: str, ours: float, naive: float, target: float) -> bool:
    verdict = "meets" if ours >= target else "MISSES"
    print(
        f"  {title:<34} labgate {ours:>12,.1f} {unit}   naive split {naive:>12,.1f} {unit}   "
        f"ratio {ours / naive:4.2f}   target {target:,.0f}: {verdict}"
    )
    return ours >= target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    args = parser.parse_args()
    repeat = 3 if args.quick else 5
    small, count = small_stream(60_000 if args.quick else 300_000)
    large = large_stream(8 if args.quick else 32, 2 if args.quick else 3)
    ok = True

    print(f"(a) small replies: {count:,} messages, {len(small) / 1e6:.1f} MB")
    for size in (65536, 4096):
        pieces = chunks(small, size)
        ours, got = best_time(decode_labgate, pieces, repeat)
        naive, _ = best_time(decode_naive, pieces, repeat)
        assert got == count, (got, count)  # the naive split cuts the tagged reply in three
        ok &= report(
            f"reads of {size // 1024} KiB",
            "msg/s",
            count / ours,
            count / naive,
            TARGET_MESSAGES_PER_S,
        )

    print(f"(b) large base64 blocks: {len(large) / 1e6:.1f} MB in tagged blocks")
    for size in (65536, 4096):
        pieces = chunks(large, size)
        ours, got = best_time(decode_labgate, pieces, repeat)
        naive, _ = best_time(decode_naive, pieces, repeat)
        assert got == large.count(b"OK 5 <quote>")
        ok &= report(
            f"reads of {size // 1024} KiB",
            "MB/s",
            len(large) / ours / 1e6,
            len(large) / naive / 1e6,
            TARGET_MB_PER_S,
        )
    print("all targets met" if ok else "some target missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
