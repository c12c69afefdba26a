"""The command log: an entry is in the file before its reply leaves, and never read half-written."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labgate.instrument.commandlog import CommandLog, read_log
from labgate.instrument.simulator import RunningSimulator
from labgate.scpi.messages import Error, Ok

Raw = Callable[[tuple[str, int] | None], Any]


def test_a_line_still_being_written_is_left_for_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    path.write_bytes(b'{"command": "DRAWER?"}\n{"command": "ACC')
    assert read_log(path) == [{"command": "DRAWER?"}]
    with path.open("ab") as handle:
        handle.write(b'ESS?"}\n')
    assert read_log(path) == [{"command": "DRAWER?"}, {"command": "ACCESS?"}]


def test_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert read_log(tmp_path / "absent.jsonl") == []


def test_readers_never_see_half_of_a_long_entry(tmp_path: Path) -> None:
    # Entries far past a text file's 8 KiB buffer, which split them into several writes.
    log = CommandLog(tmp_path / "commands.jsonl")
    total = 200
    padding = "\\xff" * 10_000

    def write() -> None:
        for number in range(total):
            log.record({"n": number, "raw": padding})

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while writer.is_alive() or seen < total:
        entries = read_log(log.path)  # would raise on a torn line
        assert len(entries) >= seen
        assert [entry["n"] for entry in entries] == list(range(len(entries)))
        seen = len(entries)
    writer.join()
    log.close()
    assert seen == total


def test_a_command_is_logged_by_the_time_its_reply_arrives(
    threaded: RunningSimulator, raw: Raw
) -> None:
    client = raw(threaded.plain)
    before = len(threaded.received())
    for ident in range(20):
        assert isinstance(client.ask(f"{ident} ACC?"), Ok)
        assert threaded.received()[-1]["ident"] == ident
    # A junk command whose logged form (escapes, then JSON escapes) runs past 8 KiB.
    junk = client.ask(b"99 \xff" + b"\xfe" * 4000 + b"\n")
    assert isinstance(junk, Error)
    entries = threaded.received()
    assert len(entries) == before + 21
    assert len(entries[-1]["raw"]) > 8192
