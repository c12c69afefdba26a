"""On record first: the log's durable point, the callbacks that wait for it, failing and
recovering; and, through a running gateway, that no command reaches the instrument before its
record is on disk, not even the one in flight when the disk stops taking writes."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from labgate.gateway.audit import AuditLog, AuditWriteFailed
from labgate.gateway.auditchain import Intact, verify


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]


def intact(path: Path) -> Intact:
    with path.open("rb") as lines:
        result = verify(lines)
    assert isinstance(result, Intact), result
    return result


def wait_until(predicate: Any, *, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout:g} s"
        time.sleep(0.01)


def stuck_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: a write to it blocks until the read end is closed."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"\0" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    return read_end, write_end


def put_back(log: AuditLog) -> None:
    """Point the log's descriptor at its own file again (after a test pointed it elsewhere)."""
    fd = os.open(log.path, os.O_RDWR | os.O_APPEND)
    assert log._fd is not None
    os.dup2(fd, log._fd)
    os.close(fd)


# ---------------------------------------------------------------- the log alone


def test_record_returns_its_seq_and_durable_seq_is_what_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, batch_size=1000, flush_interval=60) as log:
        first = log.record({"event": "a"})
        second = log.record({"event": "b"})
        assert second == first + 1
        time.sleep(0.1)
        assert log.durable_seq < first  # queued, nobody waits: not written yet
        assert records(path)[-1]["seq"] == log.durable_seq
        log.flush_sync()
        assert log.durable_seq == second == records(path)[-1]["seq"]


def test_an_urgent_record_is_written_at_once_with_everything_before_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, batch_size=1000, flush_interval=60) as log:
        lazy = log.record({"event": "reply"})
        urgent = log.record({"event": "command"}, urgent=True)
        wait_until(lambda: log.durable_seq >= urgent, what="the urgent record on disk")
        assert [r["seq"] for r in records(path)][-2:] == [lazy, urgent]


def test_a_callback_runs_only_once_its_record_is_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    seen: list[tuple[int, AuditWriteFailed | None, list[int]]] = []

    async def run() -> None:
        async with AuditLog(path, batch_size=1000, flush_interval=60) as log:
            done = asyncio.Event()
            for n in range(20):  # several sessions waiting at once, some for the same write
                seq = log.record({"event": "command", "n": n}, urgent=n % 3 == 0)

                def called(failure: AuditWriteFailed | None, seq: int = seq) -> None:
                    seen.append((seq, failure, [r["seq"] for r in records(path)]))
                    if len(seen) == 20:
                        done.set()

                log.when_durable(seq, called)
            await asyncio.wait_for(done.wait(), 20)

    asyncio.run(run())
    assert sorted(seq for seq, _, _ in seen) == [seq for seq, _, _ in seen]  # in seq order
    for seq, failure, on_disk in seen:
        assert failure is None
        assert seq in on_disk


def test_a_failed_write_fails_its_waiters_and_nothing_is_called_durable(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def run() -> tuple[AuditWriteFailed | None, int, int]:
        log = AuditLog(path, retry_interval=0.05)
        await log.start()
        durable_before = log.durable_seq
        read_end, write_end = stuck_pipe()
        assert log._fd is not None
        os.dup2(write_end, log._fd)  # the next write blocks, as on a disk that stopped
        answer: asyncio.Future[AuditWriteFailed | None] = asyncio.get_running_loop().create_future()
        seq = log.record({"event": "command", "command": "POW?"}, urgent=True)
        log.when_durable(seq, answer.set_result)
        # The commit waits in the write (on the loop: its caller waits with it) until, from
        # another thread, the write is made to fail (EPIPE), as on a disk that gave up.
        closer = threading.Timer(0.3, os.close, args=(read_end,))
        closer.start()
        started = time.monotonic()
        failure = await asyncio.wait_for(answer, 20)
        assert time.monotonic() - started >= 0.25  # nothing answered before the write failed
        closer.join()
        with pytest.raises(AuditWriteFailed, match="records are refused"):
            log.record({"event": "command", "command": "DRAW?"}, urgent=True)
        put_back(log)  # the disk works again: the writer's next retry succeeds
        await asyncio.wait_for(_until(lambda: not log.failed), 20)
        after = log.record({"event": "command", "command": "after"}, urgent=True)
        await log.aclose()
        os.close(write_end)
        return failure, durable_before, after

    failure, durable_before, after = asyncio.run(run())
    assert isinstance(failure, AuditWriteFailed)
    lines = records(path)
    recovered = next(r for r in lines if r["event"] == "log-recovered")
    assert recovered["late_from_seq"] == durable_before + 1
    assert recovered["refused"] == 1
    assert "pipe" in recovered["reason"].lower()
    assert [r.get("command") for r in lines if r["event"] == "command"] == ["POW?", "after"]
    assert intact(path).closed  # the late batch and the recovery continue the chain unbroken
    assert lines[-2]["seq"] == after


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_a_partly_written_batch_is_cut_off_before_it_is_written_again(tmp_path: Path) -> None:
    # As when a disk fills in the middle of a write: part of a line lands, then writes fail.
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, retry_interval=0.05)
    log.open()
    log.flush_sync()
    with path.open("ab") as torn:
        torn.write(b'{"event":"half a li')  # what a short write leaves behind
    full = os.open("/dev/full", os.O_WRONLY)
    assert log._fd is not None
    os.dup2(full, log._fd)
    os.close(full)
    log.record({"event": "command", "n": 1})
    with pytest.raises(AuditWriteFailed):
        log.flush_sync()
    put_back(log)
    wait_until(lambda: not log.failed, what="recovery")
    log.close()
    assert b"half a li" not in path.read_bytes()
    assert intact(path).closed


def test_a_log_that_never_recovers_still_refuses_and_closes_with_the_failure(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", retry_interval=0.05)
    log.open()
    full = os.open("/dev/full", os.O_WRONLY)
    assert log._fd is not None
    os.dup2(full, log._fd)
    os.close(full)
    log.record({"event": "command"}, urgent=True)
    wait_until(lambda: log.failed, what="the failure")
    time.sleep(0.3)  # several retries, all failing
    assert log.failed
    with pytest.raises(AuditWriteFailed):
        log.record({"event": "later"})
    with pytest.raises(AuditWriteFailed):
        log.close()


# ---------------------------------------------------------------- through a running gateway


def _token() -> str:
    return secrets.token_hex(6)


def _listing(token: str) -> str:
    """A harmless command with an argument no other command has, to find it in both logs."""
    return f"FILE:LIST? public_run_complete/{token}-*"


def _reply(client: Any) -> bytes:
    """The first line of the next reply, the rest of a multi-line one read past."""
    first: bytes = client.line()
    if b"<quote.reply>" in first and b"</quote.reply>" not in first:
        while b"</quote.reply>" not in client.line():
            pass
    return first


def _reached_instrument(simulator: Any, token: str) -> bool:
    return any(token in str(entry.get("raw", "")) for entry in simulator.received())


def _audited(gateway: Any, token: str) -> list[dict[str, Any]]:
    path = gateway.gateway.audit.path
    return [r for r in records(path) if r.get("event") == "command" and token in str(r)]


def test_a_command_waits_for_its_record_and_is_dropped_when_the_disk_fails(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    audit = gateway.gateway.audit
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC -stealth=false -exclusive=false Observer") == b"OK 0"
    warm = _token()
    client.send(f"1 {_listing(warm)}")
    assert _reply(client).startswith(b"OK 1")
    assert _reached_instrument(simulator, warm)

    read_end, write_end = stuck_pipe()
    assert audit._fd is not None
    os.dup2(write_end, audit._fd)  # the log's next write hangs: nothing is durable from here
    held = _token()
    client.send(f"2 {_listing(held)}")
    time.sleep(1.0)
    assert not _reached_instrument(simulator, held)  # judged allowed, but not on disk yet

    os.close(read_end)  # the hanging write fails: the command must never go out
    client.sock.settimeout(20)
    refusal = client.line()
    assert refusal.startswith(b"ERRor 0 [IOError]")
    assert b"audit log cannot record" in refusal
    assert client.line() == b""  # the session is over
    time.sleep(0.5)
    assert not _reached_instrument(simulator, held)

    # Writing works again: the gateway says so in its log and serves commands again.
    put_back(audit)
    wait_until(lambda: not audit.failed, what="the audit log's recovery")
    again = raw_client(gateway, pki, "alice")
    assert again.line().startswith(b"READy")
    assert again.ask("0 ACC -stealth=false -exclusive=false Observer") == b"OK 0"
    after = _token()
    again.send(f"1 {_listing(after)}")
    assert _reply(again).startswith(b"OK 1")
    assert _reached_instrument(simulator, after)
    gateway.call(audit.flush())
    assert _audited(gateway, after)
    events = records(audit.path)
    assert any(r["event"] == "log-recovered" for r in events)
    os.close(write_end)


def test_every_command_the_instrument_ran_was_on_disk_first(
    gateway: Any, pki: Any, raw_client: Any, simulator: Any
) -> None:
    # The file is read as each reply comes back, never flushed by the test: a record that was
    # only queued when its command went out is not there yet.
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    assert client.ask("0 ACC -stealth=false -exclusive=false Observer") == b"OK 0"
    path = gateway.gateway.audit.path
    for ident in range(1, 21):
        token = _token()
        client.send(f"{ident} {_listing(token)}")
        assert _reply(client).startswith(b"OK %d" % ident)
        assert token in path.read_text(), f"command {ident} ran before its record was on disk"
        assert _reached_instrument(simulator, token)
