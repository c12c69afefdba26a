"""What judging an EXP:ZIPWRITE archive costs: labgate.scpi.archive against Python's zipfile.

Each workload is timed best-of-N in CPU seconds, in one run:

- labgate: `archive.inspect_base64` on the body as relayed (base64 lines checked and decoded,
  every local header and the central directory walked, every member inflated under its cap);
- zipfile: the same body decoded with `base64.b64decode`, then `ZipFile(...).testzip()`, which
  reads and CRC-checks every member as the central directory lists it (no name rules, no bounds,
  no local header comparison): what a careful unzipper does before it unpacks.

Workloads: qslib's own run folder (`Experiment.save_file`), 400 small XML members, one 64 MiB
member of zeros (the worst inflation ratio deflate has), and 8 MiB of random bytes (no
compression). The first two are what clients send; the last two bound what a hostile Controller
can make the gateway's event loop do with one command.

Run: python bench/archive_check.py [--quick]
"""

import argparse
import base64
import io
import os
import time
import zipfile
from collections.abc import Callable

from qslib import Experiment, Protocol, Stage, Step

from labgate.scpi import archive
from labgate.scpi.arguments import member_problem


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as written:
        for name, data in members.items():
            written.writestr(name, data)
    return buffer.getvalue()


def _qslib_run_folder() -> bytes:
    protocol = Protocol([Stage([Step(30, 95.0)]), Stage([Step(20, 60.0)], repeat=40)])
    buffer = io.BytesIO()
    Experiment(name="bench run", protocol=protocol).save_file(buffer)
    return buffer.getvalue()


def _labgate(body: str) -> None:
    verdict = archive.inspect_base64(body, member_rule=member_problem)
    assert isinstance(verdict, archive.Accepted), verdict


def _zipfile(body: str) -> None:
    data = base64.b64decode(body)
    with zipfile.ZipFile(io.BytesIO(data)) as read:
        assert read.testzip() is None


def _best(function: Callable[[str], None], body: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        function(body)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller bombs")
    quick = parser.parse_args().quick
    repeats = 3 if quick else 7
    zeros = (8 if quick else 64) * 1024 * 1024
    workloads = {
        "qslib run folder": _qslib_run_folder(),
        "400 XML members": _zip(
            {f"run/apldbio/sds/f{n}.xml": b"<v>%d</v>" % n * 300 for n in range(400)}
        ),
        f"{zeros >> 20} MiB of zeros": _zip({"run/zeros.bin": bytes(zeros)}),
        "8 MiB random": _zip({"run/random.bin": os.urandom(8 * 1024 * 1024)}),
    }
    print(f"{'workload':<20} {'zip bytes':>11} {'labgate ms':>11} {'zipfile ms':>11} {'ratio':>6}")
    for label, data in workloads.items():
        body = "\n" + base64.encodebytes(data).decode()
        ours = _best(_labgate, body, repeats)
        peer = _best(_zipfile, body, repeats)
        ratio = ours / peer if peer else float("nan")
        print(f"{label:<20} {len(data):>11} {ours * 1e3:>11.2f} {peer * 1e3:>11.2f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
