"""The gateway's audit log: one hash-chained JSON line per event, written and fsynced by one
writer thread, with group commit: one fsync covers every record queued at that moment.

Usage from the gateway (asyncio)::

    log = AuditLog(Path("audit.jsonl"))            # batch_size=64, flush_interval=0.05
    await log.start()                              # creates the file 0600, or resumes its chain
    seq = log.record(event, urgent=True)           # a command about to be forwarded
    log.when_durable(seq, forward)                 # forward(None) once it is on disk
    log.record({"event": "reply", ...})            # nothing waits for this one
    await log.flush()                              # optional: wait until all of it is on disk
    await log.aclose()                             # writes the rest and a log-stop record

From threads and tests the same object works without a loop: `open()`, `record()`, `flush_sync()`,
`close()`, or `with AuditLog(path) as log: ...`. `async with AuditLog(path) as log:` also works.

Theory of operation
-------------------
`record(event)` never waits for the disk: it encodes the line at once (so the order of calls is
the order of the chain, and a bad event raises `AuditRecordError` at the caller), adds `time`
(RFC 3339 UTC, milliseconds), `seq`, `prev` and `digest`, queues the bytes and returns the
record's `seq`. `durable_seq` is the log's durable point: every record up to it is written and
fsynced. The gateway forwards a command only once `durable_seq` has reached its record's `seq`:
it records the command with `urgent=True` and holds the bytes until `when_durable` calls back.

Group commit. An urgent record recorded on the loop (`start()`) schedules one commit for that
turn of the loop: it writes everything queued by then (other sessions' commands, replies nobody
waits for) in one write and one fsync, then runs the `when_durable` callbacks of all it covered.
Everything that arrives while the loop waits for that fsync goes in the next one, so under load
many sessions share each fsync, and a lone command pays one. The commit runs on the loop, not on
the writer thread, on purpose: handing each command to a thread and back costs several thread
switches with the GIL changing hands (measured: a third more CPU per short session than the
fsync alone); the price is that the loop waits out each fsync, as the commands it covers do, and
a disk that hangs stalls the whole gateway, not only its commands. The writer thread writes
records nobody waits for once `batch_size` are queued, `flush()` asks, or the oldest has waited
`flush_interval` seconds, and urgent records from other threads. One lock keeps the two writers
in turn, so the file holds the chain in order.

Failing closed: if a write or an fsync fails, or the queue holds more than `max_pending` records
(`AuditBacklog`), `record()` raises instead of dropping the event, so the gateway refuses the
command it could not record; callbacks waiting for a record that did not get on disk are called
with the `AuditWriteFailed`, so its command is never forwarded. The writer then retries every
`retry_interval` seconds: it cuts the file back to its last durable size (a failed write may
have left part of a line) and writes the lost batch again, so the chain goes on unbroken. When
that succeeds it records `log-recovered` (when it failed, why, the records written late and the
number refused meanwhile), says so on the gateway's log, and accepts records again.

Resuming: on `start()` with an existing non-empty file the log reads its first line (the log id)
and verifies the links of its last 64 KiB, then continues the chain with a log-resume record. It
refuses a log whose last line is cut short (`AuditLogTruncated`) or whose tail does not verify
(`AuditLogBroken`): appending would bury the damage under fresh records. An advisory lock keeps a
second writer off the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import heapq
import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from labgate.gateway.auditchain import (
    RECOVERED_EVENT,
    RESUME_EVENT,
    STOP_EVENT,
    AuditError,
    ChainHead,
    Intact,
    next_line,
    start_line,
    verify,
    verify_tail,
)

__all__ = [
    "AuditBacklog",
    "AuditLog",
    "AuditLogBroken",
    "AuditLogBusy",
    "AuditLogClosed",
    "AuditLogTruncated",
    "AuditLogUnavailable",
    "AuditWriteFailed",
]

log = logging.getLogger("labgate.gateway")

# Enough to hold dozens of records however large their fields get, small enough to read at
# every start of a log that has grown to gigabytes.
TAIL_WINDOW = 64 * 1024
# A first line longer than this is not one the log wrote.
MAX_START_LINE = 64 * 1024


class AuditLogTruncated(AuditError):
    """The existing log's last line is incomplete; the log refuses to append after it."""


class AuditLogBroken(AuditError):
    """The existing log's start or tail fails verification; the log refuses to append to it."""


class AuditLogUnavailable(AuditError):
    """The log file or its directory cannot be created, opened or read."""


class AuditLogBusy(AuditError):
    """Another writer holds the log file."""


class AuditLogClosed(AuditError):
    """A record was offered to a log that is not open."""


class AuditWriteFailed(AuditError):
    """Writing or syncing the log failed; no further record is accepted."""


class AuditBacklog(AuditError):
    """More records wait for the disk than the log holds in memory."""


def rfc3339_now() -> str:
    """Now in UTC, RFC 3339 with milliseconds: 2026-11-23T05:01:06.123Z."""
    return rfc3339_from_ns(time.time_ns())


def rfc3339_from_ns(ns: int) -> str:
    """`ns` nanoseconds after the epoch as `rfc3339_now` writes it: truncated to milliseconds."""
    second, nanos = divmod(ns, 1_000_000_000)
    return f"{_utc_second(second)}.{nanos // 1_000_000:03d}Z"


# Formatting the date and time of day is most of the cost of a timestamp, and a busy log asks for
# the same second hundreds of times over. One entry: the clock moves on and seldom comes back.
@functools.lru_cache(maxsize=1)
def _utc_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).isoformat().removesuffix("+00:00")


class AuditLog:
    """An append-only, hash-chained audit log with a writer thread. See the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int = 64,
        flush_interval: float = 0.05,
        max_pending: int = 100_000,
        retry_interval: float = 1.0,
    ) -> None:
        if batch_size < 1 or flush_interval <= 0 or max_pending < batch_size or retry_interval <= 0:
            raise ValueError(
                f"audit log needs batch_size >= 1, flush_interval > 0, max_pending >= "
                f"batch_size, retry_interval > 0; got {batch_size}, {flush_interval}, "
                f"{max_pending}, {retry_interval}"
            )
        self.path = Path(path)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.retry_interval = retry_interval
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._commit_scheduled = False
        self._syncing = 0  # threads in `flush_sync`, waiting for the durable point to move
        self._loop_thread: int | None = None  # urgent records from this thread: `_commit`
        # A batch whose write failed, for the writer to retry: data, first and last seq, why,
        # when (RFC 3339 and monotonic).
        self._failed: tuple[bytes, int, int, str, str, float] | None = None
        self._pending: list[bytes] = []
        self._first_at = 0.0  # when the oldest queued record was queued (monotonic)
        self._urgent = False  # a queued record is waited for: write now
        self._head: ChainHead | None = None
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flush_now = False
        self._durable_seq = -1
        self._durable_size = 0  # the file's size after the last fsync that succeeded
        self._failure: AuditWriteFailed | None = None
        self._refused = 0  # records refused since the failure
        self._loop: asyncio.AbstractEventLoop | None = None
        # Callbacks waiting for a seq to be durable, in seq order: (seq, order, callback). Used
        # on the loop only; the writer just asks the loop to look (see `_wake_loop`).
        self._waiters: list[tuple[int, int, Callable[[AuditWriteFailed | None], None]]] = []
        self._order = itertools.count()
        self.records_written = 0

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.open)
        self._loop_thread = threading.get_ident()

    async def aclose(self) -> None:
        try:
            await asyncio.to_thread(self.close)
        finally:
            self._release_waiters()  # nothing more will be written: no callback is left waiting
            self._loop = None
            self._loop_thread = None

    async def flush(self) -> None:
        """Wait until every record offered so far is written and fsynced."""
        await asyncio.to_thread(self.flush_sync)

    async def __aenter__(self) -> AuditLog:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> AuditLog:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Create the log (0600) or resume its chain, and start the writer thread."""
        if self._fd is not None:
            raise AuditError(f"audit log {self.path} is already open")
        try:
            fd, head, resumed = _open_chain(self.path)
        except OSError as err:
            raise AuditLogUnavailable(
                f"cannot open audit log {self.path}: {err.strerror or err}"
            ) from err
        with self._cond:
            self._fd, self._head = fd, head
            self._durable_seq = head.seq
            self._durable_size = os.fstat(fd).st_size
            self._stopping = False
            self._failure = None
            if resumed:
                # A restart is an event worth seeing, the more so after a crash (no log-stop).
                self._enqueue({"event": RESUME_EVENT})
        self._thread = threading.Thread(target=self._run, name="labgate-audit", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Record log-stop, write everything queued, fsync and close. Idempotent."""
        if self._thread is None:
            return
        with self._cond:
            if self._failure is None:
                self._enqueue({"event": STOP_EVENT})
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        self._thread = None
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self._failure is not None:
            raise self._failure

    # ------------------------------------------------------------ recording

    def record(self, event: Mapping[str, object], *, urgent: bool = False) -> int:
        """Queue one event and return its seq; never waits for the disk. Safe from any thread.

        `urgent`: something waits for this record to be durable (see `when_durable`), so the
        writer writes at once rather than waiting for a batch."""
        with self._cond:
            if self._failure is not None:
                self._refused += 1
                raise self._failure
            if self._head is None or self._stopping:
                raise AuditLogClosed(f"audit log {self.path} is not open; event not recorded")
            if len(self._pending) >= self.max_pending:
                raise AuditBacklog(
                    f"audit log {self.path} has {len(self._pending)} records waiting for the "
                    f"disk (limit {self.max_pending}); event not recorded"
                )
            seq = self._enqueue(event)
            if urgent:
                if threading.get_ident() == self._loop_thread:
                    if not self._commit_scheduled:  # once per loop turn: its records share it
                        self._commit_scheduled = True
                        self._loop.call_soon(self._commit)  # type: ignore[union-attr]
                elif not self._urgent:
                    self._urgent = True
                    self._cond.notify()
            return seq

    def _enqueue(self, event: Mapping[str, object]) -> int:
        assert self._head is not None
        line, self._head = next_line(self._head, event, time=rfc3339_now())
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append(line)
        if len(self._pending) == self.batch_size:
            self._cond.notify()
        return self._head.seq

    @property
    def durable_seq(self) -> int:
        """The seq of the last record written and fsynced: every record up to it is on disk."""
        return self._durable_seq

    def when_durable(self, seq: int, callback: Callable[[AuditWriteFailed | None], None]) -> None:
        """On the loop the log was started on: call `callback(None)` once record `seq` is
        durable, or `callback(failure)` if writing failed before it got on disk."""
        if self._loop is None:
            raise AuditLogClosed(f"audit log {self.path} was not started on an event loop")
        heapq.heappush(self._waiters, (seq, next(self._order), callback))
        # The writer looks for waiters after it moves the durable point; looking here after
        # adding one means none is missed whichever of the two comes first.
        if seq <= self._durable_seq or self._failure is not None or self._fd is None:
            self._loop.call_soon(self._release_waiters)

    def _release_waiters(self) -> None:
        """On the loop: call back every waiter whose record is durable, or that never will be."""
        waiters = self._waiters
        durable, failure = self._durable_seq, self._failure
        if failure is None and self._fd is None:
            failure = AuditWriteFailed(f"audit log {self.path} is closed")
        while waiters and (waiters[0][0] <= durable or failure is not None):
            seq, _, callback = heapq.heappop(waiters)
            try:
                callback(None if seq <= durable else failure)
            except Exception:  # one caller's bug must not strand the others
                log.exception("audit log %s: a durability callback failed", self.path)

    def _wake_loop(self) -> None:
        """From the writer: have the loop call back the waiters the last write concerns."""
        loop = self._loop
        if loop is not None and self._waiters:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(self._release_waiters)

    def flush_sync(self) -> None:
        """Block until every record offered so far is written and fsynced."""
        with self._cond:
            if self._head is None:
                return
            target = self._head.seq
            self._flush_now = True
            self._cond.notify_all()
            self._syncing += 1
            try:
                while self._durable_seq < target and self._failure is None:
                    if self._thread is None or not self._thread.is_alive():
                        raise AuditWriteFailed(f"audit log {self.path}: its writer has stopped")
                    self._cond.wait(timeout=1.0)
            finally:
                self._syncing -= 1
            if self._failure is not None:
                raise self._failure

    @property
    def pending(self) -> int:
        """Records queued but not yet on disk (for metrics)."""
        return len(self._pending)

    @property
    def failed(self) -> bool:
        """Writing failed and has not succeeded again since: records are refused."""
        return self._failure is not None

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            with self._cond:
                work = self._await_work()
                if work is None:
                    return
                failed, self._failed = self._failed, None
            if failed is not None:
                if not self._recover(*failed):
                    return
                continue
            self._write_pending()

    def _commit(self) -> None:
        """On the loop: write and sync what is queued now, then call back who waited for it.

        Urgent records are written here rather than by the writer thread: a lone command then
        costs no thread switches (each is several, with the GIL changing hands), only the time
        of the fsync, during which the loop waits as its command does. Under load, everything
        queued since the last commit shares the one write."""
        self._commit_scheduled = False
        if self._failure is None:
            self._write_pending()
        self._release_waiters()

    def _write_pending(self) -> None:
        """Write and fsync every queued record (from the writer thread or the loop)."""
        with self._write_lock:  # one writer at a time, so the file keeps the order of the chain
            with self._cond:
                if not self._pending or self._failure is not None or self._fd is None:
                    return
                batch, self._pending = self._pending, []
                self._flush_now = self._urgent = False
                assert self._head is not None
                last_seq = self._head.seq
            data = b"".join(batch)
            try:
                _write_all(self._fd, data)
            except OSError as err:
                self._fail(data, last_seq - len(batch) + 1, last_seq, err)
                return
            with self._cond:
                self._durable_seq = last_seq
                self._durable_size += len(data)
                self.records_written += len(batch)
                if self._syncing:  # only `flush_sync` waits on this: waking the writer costs
                    self._cond.notify_all()
        if threading.get_ident() != self._loop_thread:
            self._wake_loop()

    def _await_work(self) -> bool | None:
        """Under the lock: wait for a batch worth writing or a failed one to recover (True);
        None when stopped and drained."""
        while True:
            if self._failed is not None:
                return True
            pending = self._pending
            if pending:
                if self._urgent or self._flush_now or self._stopping:
                    return True
                if len(pending) >= self.batch_size:
                    return True
                remaining = self._first_at + self.flush_interval - time.monotonic()
                if remaining <= 0:
                    return True
                self._cond.wait(timeout=remaining)
            elif self._stopping:
                return None
            else:
                # Idle: a record nobody waits for does not wake the writer (that would cost a
                # thread switch per reply); it is seen here within `flush_interval`, or sooner
                # with the next urgent one.
                self._cond.wait(timeout=self.flush_interval)

    def _fail(self, data: bytes, first_seq: int, last_seq: int, error: OSError) -> None:
        """A write or fsync failed: refuse records from now on, fail every waiter, and have the
        writer thread retry the lost batch (`_recover`)."""
        reason = error.strerror or str(error)
        with self._cond:
            self._failure = AuditWriteFailed(
                f"cannot write audit log {self.path}: {reason}; records are refused until a "
                f"write succeeds again (records from seq {first_seq} are not on disk yet)"
            )
            self._refused = 0
            self._failed = (data, first_seq, last_seq, reason, rfc3339_now(), time.monotonic())
            self._cond.notify_all()
        log.error("%s", self._failure)
        if threading.get_ident() != self._loop_thread:
            self._wake_loop()  # whoever waits for those records gets the failure

    def _recover(
        self, data: bytes, first_seq: int, last_seq: int, reason: str, failed_at: str, since: float
    ) -> bool:
        """In the writer thread, after `_fail`: retry writing `data` (records `first_seq` to
        `last_seq`) where the last durable write ended, until it succeeds (True) or the log is
        closed first (False)."""
        while True:
            with self._cond:
                if not self._stopping:
                    self._cond.wait(timeout=self.retry_interval)
                stopping = self._stopping
            try:
                with self._write_lock:
                    fd = self._fd_or_fail()
                    # A failed write may have left part of a line: cut back to the durable end.
                    os.ftruncate(fd, self._durable_size)
                    _write_all(fd, data)
            except OSError:
                if stopping:
                    return False
                continue
            break
        with self._cond:
            self._durable_seq = last_seq
            self._durable_size += len(data)
            self.records_written += last_seq - first_seq + 1
            self._failure = None
            refused = self._refused
            self._enqueue(
                {
                    "event": RECOVERED_EVENT,
                    "failed_at": failed_at,
                    "reason": reason,
                    "late_from_seq": first_seq,
                    "late_to_seq": last_seq,
                    "refused": refused,
                }
            )
            self._urgent = True
            self._cond.notify_all()
        log.warning(
            "audit log %s: writing works again after %.1f s (failed: %s); records seq %d-%d "
            "written late, %d refused meanwhile; commands are accepted again",
            self.path, time.monotonic() - since, reason, first_seq, last_seq, refused,
        )  # fmt: skip
        self._wake_loop()
        return True

    def _fd_or_fail(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, "log file is closed")
        return self._fd


# fdatasync is enough for an append (the log is only ever appended to, or cut back and appended
# to when a failed write is retried): besides the data it flushes the metadata needed to read the
# data back, the file's new size among them, and skips only what is not, such as the mtime. It
# saves a little CPU and time on every commit, which a lone command pays in full.
_sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data` and make it durable: appended bytes and the file's size on disk."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    _sync(fd)


# ---------------------------------------------------------------- opening a log


def _open_chain(path: Path) -> tuple[int, ChainHead, bool]:
    """An fd open for appending, locked, the head to continue from, and whether it resumed."""
    created = not path.exists() and _create(path)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AuditLogBusy(f"audit log {path} is held by another writer") from None
        if os.fstat(fd).st_size == 0:
            # An empty file made by someone else (touch, logrotate's `create`): start it.
            line, head = start_line(log_id=secrets.token_hex(32), time=rfc3339_now())
            _write_all(fd, line)
            return fd, head, False
        return fd, _resume(path, fd), not created
    except BaseException:
        os.close(fd)
        raise


def _create(path: Path) -> bool:
    """Create the log with its log-start line, atomically: a reader never sees it half made.

    False if another process created it first.
    """
    line, _ = start_line(log_id=secrets.token_hex(32), time=rfc3339_now())
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, line)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # unlike rename, fails if the log appeared meanwhile
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def _resume(path: Path, fd: int) -> ChainHead:
    size = os.fstat(fd).st_size
    if size <= TAIL_WINDOW:
        lines = os.pread(fd, size, 0).splitlines(keepends=True)
        _refuse_truncated(path, lines, size)
        result = verify(lines)
        if not isinstance(result, Intact):
            raise AuditLogBroken(f"audit log {path}: {result.summary()}; not appending to it")
        return ChainHead(log_id=result.log_id, seq=result.last_seq, hash=result.head)
    start = verify([os.pread(fd, MAX_START_LINE, 0).split(b"\n", 1)[0] + b"\n"])
    if not isinstance(start, Intact):
        raise AuditLogBroken(f"audit log {path}: {start.summary()}; not appending to it")
    tail = os.pread(fd, TAIL_WINDOW, size - TAIL_WINDOW).splitlines(keepends=True)[1:]
    _refuse_truncated(path, tail, size)
    result_tail = verify_tail(tail)
    if result_tail is None:
        raise AuditLogBroken(
            f"audit log {path}: no complete line in its last {TAIL_WINDOW} bytes; not appending"
        )
    if not isinstance(result_tail, Intact):
        raise AuditLogBroken(
            f"audit log {path}: within its last {TAIL_WINDOW} bytes, {result_tail.summary()} "
            f"(counting from the first complete line there); not appending to it"
        )
    return ChainHead(log_id=start.log_id, seq=result_tail.last_seq, hash=result_tail.head)


def _refuse_truncated(path: Path, lines: list[bytes], size: int) -> None:
    if lines and not lines[-1].endswith(b"\n"):
        raise AuditLogTruncated(
            f"audit log {path}: its last line (the final {len(lines[-1])} of {size} bytes) is "
            f"incomplete, probably cut by a crash mid-write; not appending after it. Check the "
            f"rest with `labgate audit verify {path}`, then move the file aside to start a new log"
        )
