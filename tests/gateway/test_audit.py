"""The audit log writer on real files: creating, batching, resuming, refusing, failing closed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import threading
import time
from pathlib import Path

import pytest

from labgate.gateway.audit import (
    AuditBacklog,
    AuditLog,
    AuditLogBroken,
    AuditLogBusy,
    AuditLogClosed,
    AuditLogTruncated,
    AuditLogUnavailable,
    AuditWriteFailed,
)
from labgate.gateway.auditchain import AuditRecordError, Intact, Problem, verify

RFC3339_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def verdict(path: Path) -> Intact:
    with path.open("rb") as lines:
        result = verify(lines)
    assert isinstance(result, Intact), result
    return result


def wait_until(predicate: object, *, timeout: float = 20.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_new_log_is_owner_only_and_starts_with_log_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        first = records(path)[0]
    assert first["event"] == "log-start"
    assert re.fullmatch(r"[0-9a-f]{64}", str(first["log_id"]))


def test_every_record_survives_a_clean_async_stop(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def run() -> None:
        log = AuditLog(path)
        await log.start()
        for i in range(2000):
            log.record({"event": "command", "conn": i % 7, "cmd": "POW?", "n": i})
        await log.aclose()

    asyncio.run(run())
    lines = records(path)
    assert [r["event"] for r in (lines[0], lines[-1])] == ["log-start", "log-stop"]
    assert [r["n"] for r in lines[1:-1]] == list(range(2000))
    assert [r["seq"] for r in lines] == list(range(2002))
    assert all(RFC3339_MS_UTC.fullmatch(str(r["time"])) for r in lines)
    assert verdict(path).closed


def test_records_wait_for_a_batch_or_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, batch_size=3, flush_interval=60) as log:
        log.record({"event": "a"})
        log.record({"event": "b"})
        time.sleep(0.1)
        assert len(records(path)) == 1  # queued, not written: neither a batch nor the interval
        log.record({"event": "c"})
        wait_until(lambda: len(records(path)) == 4)
    with AuditLog(path, batch_size=1000, flush_interval=0.05) as log:
        log.record({"event": "d"})
        wait_until(lambda: records(path)[-1]["event"] == "d")


def test_flush_waits_until_records_are_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def run() -> None:
        async with AuditLog(path, batch_size=1000, flush_interval=60) as log:
            log.record({"event": "connect", "conn": 1})
            await log.flush()
            assert records(path)[-1]["event"] == "connect"

    asyncio.run(run())


def test_record_never_waits_for_a_slow_disk(tmp_path: Path) -> None:
    # The writer is stuck in a write to a full pipe; record() still returns at once.
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, batch_size=1, max_pending=50)
    log.open()
    read_end, write_end = stuck_pipe()
    assert log._fd is not None
    os.dup2(write_end, log._fd)
    log.record({"event": "blocks-the-writer", "pad": "x" * 70_000})
    started = time.monotonic()
    with pytest.raises(AuditBacklog, match="records waiting for the disk"):
        for i in range(10_000):
            log.record({"event": "queued", "n": i})
    assert time.monotonic() - started < 5
    os.close(read_end)  # the writer's write now fails: the log fails closed
    with pytest.raises(AuditWriteFailed):
        log.close()
    os.close(write_end)


def stuck_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"\0" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    return read_end, write_end


def test_failed_disk_write_refuses_further_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, batch_size=1)
    log.open()
    full = os.open("/dev/full", os.O_WRONLY)
    assert log._fd is not None
    os.dup2(full, log._fd)
    os.close(full)
    log.record({"event": "lost-to-a-full-disk"})
    with pytest.raises(AuditWriteFailed, match="cannot write audit log"):
        log.flush_sync()
    with pytest.raises(AuditWriteFailed):
        log.record({"event": "after"})
    with pytest.raises(AuditWriteFailed):
        log.close()


def test_resuming_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.record({"event": "first-run"})
    with AuditLog(path) as log:
        log.record({"event": "second-run"})
    events = [r["event"] for r in records(path)]
    assert events == [
        "log-start",
        "first-run",
        "log-stop",
        "log-resume",
        "second-run",
        "log-stop",
    ]
    assert verdict(path).records == 6


def test_resuming_a_large_log_reads_only_its_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for i in range(1500):
            log.record({"event": "command", "n": i})
    assert path.stat().st_size > 3 * 64 * 1024
    with AuditLog(path) as log:
        log.record({"event": "after-restart"})
    assert verdict(path).records == 1505


def test_resuming_after_a_crash_without_log_stop(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.open()
    log.record({"event": "before-crash"})
    log.flush_sync()
    crashed = path.read_bytes()
    log.close()
    path.write_bytes(crashed)  # as the disk was when the process died
    with AuditLog(path) as log:
        log.record({"event": "after-crash"})
    assert [r["event"] for r in records(path)][1:4] == ["before-crash", "log-resume", "after-crash"]
    verdict(path)


def test_refuses_to_append_after_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.record({"event": "command"})
    cut = path.read_bytes()[:-30]
    path.write_bytes(cut)
    with pytest.raises(AuditLogTruncated, match=r"last line .* is incomplete"):
        AuditLog(path).open()
    assert path.read_bytes() == cut


def test_refuses_to_append_to_a_log_whose_tail_was_edited(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.record({"event": "command", "identity": "labgate:user:alice"})
    path.write_bytes(path.read_bytes().replace(b"alice", b"mallo"))
    with pytest.raises(AuditLogBroken, match="line 2 edited"):
        AuditLog(path).open()


def test_refuses_to_append_to_a_large_log_whose_tail_was_edited(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for i in range(1500):
            log.record({"event": "command", "identity": "labgate:user:alice", "n": i})
    data = path.read_bytes()
    at = data.rindex(b"alice")
    path.write_bytes(data[:at] + b"mallo" + data[at + 5 :])
    with pytest.raises(AuditLogBroken, match="within its last 65536 bytes"):
        AuditLog(path).open()


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path), pytest.raises(AuditLogBusy, match="held by another writer"):
        AuditLog(path).open()


def test_record_on_a_closed_log_is_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(AuditLogClosed, match="not open"):
        log.record({"event": "early"})
    log.open()
    log.close()
    with pytest.raises(AuditLogClosed, match="not open"):
        log.record({"event": "late"})


def test_bad_event_raises_at_the_caller_and_leaves_the_chain_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        with pytest.raises(AuditRecordError, match="reserved key"):
            log.record({"event": "x", "seq": 1})
        with pytest.raises(AuditRecordError, match="cannot be written as JSON"):
            log.record({"event": "x", "body": b"raw"})
        log.record({"event": "fine"})
    assert verdict(path).records == 3


def test_threads_recording_at_once_make_one_intact_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, batch_size=16) as log:

        def worker(name: str) -> None:
            for i in range(300):
                log.record({"event": "command", "thread": name, "n": i})

        threads = [threading.Thread(target=worker, args=(f"t{k}",)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert verdict(path).records == 1202
    for k in range(4):
        mine = [r["n"] for r in records(path) if r.get("thread") == f"t{k}"]
        assert mine == list(range(300))


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "audit.jsonl"
    with pytest.raises(AuditLogUnavailable, match=r"cannot open audit log .*no-such-dir"):
        AuditLog(path).open()


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size >= 1"):
        AuditLog(tmp_path / "a.jsonl", batch_size=0)


def test_verify_names_the_problem_in_a_written_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for i in range(5):
            log.record({"event": "command", "n": i})
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[3]
    result = verify(lines)
    assert not result.ok
    assert (result.line, result.problem) == (4, Problem.REMOVED)
