"""One client session: relay between a verified client and its own upstream connection, every
message through the session filter, every decision into the audit log.

The client is greeted with the READy line its upstream connection received when it was opened:
a warm connection (see `slots`) keeps its own greeting, which is still the true one for that
connection (its session number is the instrument's for it), not one made up by the gateway.

The session runs in the callbacks of its two connections (see `Session`); the gateway's task for
the connection only waits for its end. It ends when either side closes, when the idle timeout or
the maximum session length passes, when a framing limit is crossed, or when the gateway closes it
(identity revoked, grant withdrawn, gateway stopping). Whatever the cause, it is recorded once,
with its reason.

On record first: a command goes to the instrument only once its audit record is durable. The
session records it (urgent), holds its bytes in `_held` in order, with the record's seq, and
writes them upstream when the audit log calls back (`when_durable`); one fsync of the log serves
every session waiting at that moment. Everything the gateway sends the instrument takes that one
path, its own `ACC`s too, so order on the connection is the order of judging. Answers the gateway
gives itself (denied, answered) go to the client at once: the instrument never sees those
commands, and their records follow with the next write. If the log fails, held commands are
dropped and the session ends with an `IOError`: nothing whose record is not on disk goes out.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from labgate.gateway.accept import ClientSide
from labgate.gateway.audit import AuditWriteFailed
from labgate.gateway.client_tls import PeerCertificate
from labgate.gateway.config import InstrumentConfig, SessionLimits
from labgate.gateway.heap import BIG_MESSAGE, give_back_free_memory
from labgate.gateway.metrics import GatewayMetrics
from labgate.gateway.protocol import Piece
from labgate.gateway.upstream import UpstreamConnection
from labgate.scpi.access import AccessLevel
from labgate.scpi.errors import FramingError

if TYPE_CHECKING:
    # Types only: the filter is the instrument's line protocol's, built by it (see `protocol`).
    from labgate.gateway.filter import Relayed, SessionFilter, Verdict

# Replies up to this size go to the client joined, as one TLS record; bigger ones as they are.
_JOIN_BELOW = 64 * 1024
log = logging.getLogger("labgate.gateway")

# Held commands above this many bytes pause reading from the client until the log catches up.
_HOLD_PAUSE = 256 * 1024


class Record(Protocol):
    """Audit one event: its seq, or None when the record could not be kept (see `AuditLog`)."""

    def __call__(self, event: Mapping[str, object], /, *, urgent: bool = False) -> int | None: ...


# Call back (None, or the failure) on the loop once a record's seq is durable: `when_durable`.
Durable = Callable[[int, Callable[[AuditWriteFailed | None], None]], None]
# Where the upstream connection goes when the session ends: kept warm (True) or closed (False).
GiveBack = Callable[[UpstreamConnection, bool], Awaitable[None]]
# The only ends after which the upstream connection may serve another session.
_CLEAN_ENDS = frozenset({"client closed", "client quit"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    conn: int
    peer: str
    instrument: InstrumentConfig
    certificate: PeerCertificate
    admitted_under: frozenset[bytes]  # the client CA file's certificates (DER) at the handshake

    @property
    def identity(self) -> str:
        return self.certificate.identity or ""


class _LongReply:
    """A reply relayed to the client as it arrives: its rewritten start, and the check that the
    rest is text as `parse_reply` would have it (the start was ASCII; the rest must be UTF-8)."""

    __slots__ = ("_text", "start")

    def __init__(self, start: Relayed) -> None:
        self.start = start
        self._text = codecs.getincrementaldecoder("utf-8")()

    def check(self, data: bytes, *, last: bool) -> None:
        """Raise UnicodeDecodeError where the reply stops being UTF-8."""
        # ASCII needs no decoding, unless a character cut at the end of a piece waits for it.
        if last or not data.isascii() or self._text.getstate()[0]:
            self._text.decode(data, final=last)


class Session:
    """One client session, driven by the callbacks of its two connections.

    Every message is judged, recorded and passed on in the callback that received it: no task
    per direction, no stream buffer and no wake-up between the TLS layer and the instrument's
    socket. Each side's back-pressure pauses the other: a client that reads slowly pauses reading
    from the instrument, an instrument that reads slowly pauses reading from the client.
    """

    def __init__(
        self,
        *,
        info: SessionInfo,
        grant: AccessLevel,
        client: ClientSide,
        upstream: UpstreamConnection,
        limits: SessionLimits,
        record: Record,
        durable: Durable,
        metrics: GatewayMetrics,
        give_back: GiveBack | None = None,
        warm: bool = False,
        limit_reason: str = "",
    ) -> None:
        self.info = info
        self._protocol = protocol = upstream.protocol
        self._quit_command = protocol.quit_command
        self.filter: SessionFilter = protocol.session_filter(
            grant=grant,
            limit_reason=limit_reason,
            next_ident=upstream.next_ident,
            keep_upstream=give_back is not None and info.instrument.upstream_idle > 0,
            identity=info.identity,
            instrument=info.instrument.name,
        )
        self._give_back = give_back
        if warm:  # a connection an earlier session used: its level is whatever that one left
            self.filter.upstream_level = None
        self._client = client
        self._upstream = upstream
        self._limits = limits
        self._record = record
        self._durable = durable
        # Bytes for the instrument whose records are not durable yet, in order: (seq, bytes,
        # commands); `_waiting_for` is the seq the log will call back for (None: not waiting).
        self._held: deque[tuple[int, bytes, int]] = deque()
        self._held_bytes = 0
        self._waiting_for: int | None = None
        self._end_when_sent = ""  # the session ends once the held commands went out
        self._metrics = metrics
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._decoder = protocol.decoder(limits.framing)
        self._queue: deque[bytes] = deque()  # client commands waiting for an ACC's answer
        self._client_paused: set[str] = set()  # why reading from the client is paused
        self._timer: asyncio.TimerHandle | None = None
        self._started = self._last_activity = time.monotonic()
        # A session does not outlive the certificate it was admitted with.
        self._expires = (
            self._started + (info.certificate.not_after - datetime.now(UTC)).total_seconds()
        )
        self._forced = False
        self._quit_sent = False  # a QUIT went to the instrument: its hanging up is no fault
        self._latency = metrics.child(metrics.upstream_latency, info.instrument.name)
        self._base: dict[str, object] = {
            "conn": info.conn,
            "identity": info.identity,
            "fingerprint": info.certificate.fingerprint,
            "instrument": info.instrument.name,
        }
        self._carried_big = False  # a message of BIG_MESSAGE or more went through
        self._long: _LongReply | None = None  # a long reply being relayed as it arrives
        self._gathered: list[bytes] | None = None  # a long message that must be read whole
        self.end_reason = ""

    def close(self, reason: str) -> None:
        """End the session from outside (revocation, withdrawn grant, shutdown): the client's
        connection is cut at once, whatever it was still to receive."""
        self._forced = True
        self._end(reason)

    def change_grant(self, level: AccessLevel, *, limit_reason: str = "") -> None:
        """A lowered grant lowers the session level at once (and the instrument's with it).
        `limit_reason`: why `level` is below the grant itself (the instrument's password)."""
        self.filter.limit_reason = limit_reason
        lowered = level < self.filter.level
        command = self.filter.lower_grant(level, now=time.monotonic())
        if not (lowered or command):
            return
        event = self._event(
            "level_lowered", level=self._protocol.level_name(level), reason="grant lowered"
        )
        seq = self._record(event, urgent=bool(command))
        if command:
            if seq is None:  # not on record: the session cannot go on at a level it lost
                self._refuse_stream("the audit log cannot record commands; none is forwarded")
                return
            # Behind the commands judged before it, never ahead: one of those may carry the
            # gateway's ACC to the old level.
            self._hold(command, seq, 0)

    async def run(self) -> None:
        client, upstream = self._client, self._upstream
        client.write(upstream.greeting)
        self._schedule_tick(self._started)
        try:
            # Either may end the session at once (a QUIT already waiting, say).
            upstream.stream.attach(self)
            client.attach(self)
            await self._done
        finally:
            if self._timer is not None:
                self._timer.cancel()
            client.detach()
            upstream.stream.detach()
            if self._forced:
                client.abort()
            else:
                client.close()  # the last reply (QUIT's OK, a refusal) still goes out
            keep = self._upstream_reusable()
            # Recorded as the client is let go, before the slower goodbye to the instrument.
            event = self._event("disconnect", reason=self.end_reason, upstream_kept=keep)
            unsent = sum(commands for _, _, commands in self._held)
            if unsent:  # recorded as allowed, but the session ended before they could go out
                event["unforwarded"] = unsent
            self._record(event)
            await self._release_upstream(keep)
            if not self._forced:
                with contextlib.suppress(TimeoutError):  # the caller then cuts it off
                    async with asyncio.timeout(2):  # a client that reads nothing waits no more
                        await client.wait_closed()
            if self._carried_big:
                give_back_free_memory()

    def _upstream_reusable(self) -> bool:
        return (
            not self._forced
            and self.end_reason in _CLEAN_ENDS
            and self.filter.reusable
            and self._upstream.stream.quiet
            and not self._held
        )

    async def _release_upstream(self, keep: bool) -> None:
        self._upstream.next_ident = self.filter.next_ident  # a later user goes on from here
        if self._give_back is None:
            await self._upstream.close()
        else:
            await self._give_back(self._upstream, keep)

    def _end(self, reason: str) -> None:
        if not self._done.done():
            self.end_reason = reason
            self._done.set_result(None)

    def _failed(self, exc: Exception) -> None:
        # A bug in one direction ends the session (and is logged) instead of leaving it half alive.
        log.error("session %d: %r", self.info.conn, exc, exc_info=exc)
        self._end(f"internal error: {type(exc).__name__}")

    # ---------------------------------------------------------------- from the client

    def client_data(self, data: bytes) -> None:
        if self._done.done() or self._end_when_sent:  # after QUIT nothing more is read
            return
        self._last_activity = time.monotonic()
        try:
            messages = self._decoder.feed(data)
            if not messages:
                return
            if self._queue:  # still waiting for an ACC's answer: these wait behind the others
                self._queue.extend(messages)
                return
            self._take(messages)
        except FramingError as exc:
            self._refuse_stream(f"client broke a framing limit: {exc}")
        except Exception as exc:
            self._failed(exc)

    def client_closed(self, exc: Exception | None) -> None:
        if exc is not None:
            self._end(f"client connection lost: {exc}")
            return
        try:
            self._decoder.close()
        except FramingError as error:
            self._refuse_stream(f"client broke a framing limit: {error}")
            return
        self._end_after_held("client closed")

    def client_backed_up(self, backed_up: bool) -> None:
        """The client reads slower than the instrument sends: hold the instrument back."""
        transport = self._upstream.stream.transport
        if transport is None or self._done.done():
            return
        if backed_up:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _take(self, messages: Sequence[bytes]) -> None:
        """Judge, record and pass on client commands in order; stop at QUIT, and hold the rest
        back while an ACC awaits the instrument's answer (they are judged at the new level)."""
        to_client: list[bytes] = []
        to_upstream: list[bytes] = []
        filter_ = self.filter
        now = time.monotonic()
        last_seq = 0
        try:
            for index, raw in enumerate(messages):
                if len(raw) >= BIG_MESSAGE:
                    self._carried_big = True
                verdict = filter_.from_client(raw, now=now)
                seq = self._recorded(verdict)
                if seq is None:
                    # Fail closed: a command that cannot be recorded is not forwarded.
                    self._count("unrecorded")
                    self._flush(to_client, to_upstream, last_seq)
                    self._refuse_stream("the audit log cannot record commands; none is forwarded")
                    return
                self._count(verdict.decision.value)
                if verdict.to_client:
                    to_client.append(verdict.to_client)
                if verdict.to_upstream:
                    to_upstream.append(verdict.to_upstream)
                    # After a QUIT the instrument hangs up, as asked: no error for that.
                    self._quit_sent |= verdict.command == self._quit_command
                    last_seq = seq
                if filter_.quit:
                    self._flush(to_client, to_upstream, last_seq)
                    self._end_after_held("client quit")  # what follows QUIT is not read
                    return
                if filter_.awaiting_level and index + 1 < len(messages):
                    self._queue.extend(messages[index + 1 :])
                    self._pause_client("an ACC awaits the instrument's answer")
                    break
        finally:
            self._flush(to_client, to_upstream, last_seq)

    def _recorded(self, verdict: Verdict) -> int | None:
        event = self._event(
            "command",
            command=verdict.command,
            args=verdict.args,  # a tuple: JSON writes it as the same array a list would be
            decision=verdict.decision.value,
            reason=verdict.reason,
        )
        if verdict.payload is not None:
            event["payload"] = {"bytes": verdict.payload.size, "sha256": verdict.payload.sha256}
        return self._record(event, urgent=bool(verdict.to_upstream))

    def _flush(self, to_client: list[bytes], to_upstream: list[bytes], last_seq: int) -> None:
        if to_upstream:
            self._hold(b"".join(to_upstream), last_seq, len(to_upstream))
            to_upstream.clear()
        if to_client:
            self._client.write(b"".join(to_client))
            to_client.clear()

    # ---------------------------------------------------------------- on record, then upstream

    def _hold(self, data: bytes, seq: int, commands: int) -> None:
        """Send `data` to the instrument once audit record `seq` (and all before it) is durable."""
        self._held.append((seq, data, commands))
        self._held_bytes += len(data)
        if self._held_bytes > _HOLD_PAUSE:
            self._pause_client("commands wait for the audit log")
        if self._waiting_for is None:
            self._waiting_for = seq
            self._durable(seq, self._on_durable)

    def _on_durable(self, failure: AuditWriteFailed | None) -> None:
        """The log's callback: records up to `_waiting_for` are on disk (or never will be)."""
        durable, self._waiting_for = self._waiting_for, None
        if self._done.done() or durable is None:
            return
        try:
            if failure is not None:
                self._refuse_stream("the audit log cannot record commands; none is forwarded")
                return
            held, out = self._held, []
            while held and held[0][0] <= durable:
                _, data, _ = held.popleft()
                out.append(data)
                self._held_bytes -= len(data)
            if out:
                self._to_upstream(b"".join(out) if len(out) > 1 else out[0])
            if held:
                self._waiting_for = held[-1][0]
                self._durable(self._waiting_for, self._on_durable)
                return
            self._resume_client("commands wait for the audit log")
            if self._end_when_sent:
                self._end(self._end_when_sent)
        except Exception as exc:
            self._failed(exc)

    def _end_after_held(self, reason: str) -> None:
        """End the session, once what it still holds for the instrument has gone out."""
        if self._held:
            self._end_when_sent = reason
        else:
            self._end(reason)

    def _to_upstream(self, data: bytes) -> None:
        transport = self._upstream.stream.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _pause_client(self, why: str) -> None:
        if not self._client_paused and self._client.transport is not None:
            self._client.transport.pause_reading()
        self._client_paused.add(why)

    def _resume_client(self, why: str) -> None:
        if why not in self._client_paused:
            return
        self._client_paused.discard(why)
        if not self._client_paused and self._client.transport is not None:
            self._client.transport.resume_reading()

    # ---------------------------------------------------------------- from the instrument

    def upstream_pieces(self, pieces: Sequence[Piece]) -> None:
        if self._done.done():
            return
        try:
            self._relay(pieces)
        except UnicodeDecodeError:
            self._end("the instrument sent a long reply that is not UTF-8")
        except Exception as exc:
            self._failed(exc)

    def upstream_closed(self, why: BaseException | None) -> None:
        if why is None:
            reason = "instrument closed"
        elif isinstance(why, FramingError):
            reason = f"instrument broke a framing limit: {why}"
        else:
            reason = f"instrument connection lost: {why}"
        if not self._done.done() and not self._quit_sent:
            self._tell_instrument_gone(reason)
        self._end(reason)

    def _tell_instrument_gone(self, reason: str) -> None:
        """The instrument went away unasked (killed, rebooted, cable pulled): every command still
        waiting for it gets an `IOError` with the reason, so the client sees why instead of a
        bare close; with none waiting, one with ident 0 says it."""
        name = self.info.instrument.name
        log.warning("session %d (%s on %s): the instrument went away: %s",
                    self.info.conn, self.info.identity, name, reason)  # fmt: skip
        text = f"instrument {name!r} went away: {reason}"
        idents = self.filter.unanswered() or [0]
        error_line = self._protocol.error_line
        with contextlib.suppress(OSError, RuntimeError):
            self._client.write(b"".join(error_line(i, "IOError", text) for i in idents))

    def upstream_backed_up(self, backed_up: bool) -> None:
        """The instrument reads slower than the client sends: hold the client back."""
        if backed_up:
            self._pause_client("the instrument reads slowly")
        else:
            self._resume_client("the instrument reads slowly")

    def _relay(self, pieces: Sequence[Piece]) -> None:
        self._last_activity = time.monotonic()
        filter_ = self.filter
        parts: list[bytes | memoryview] = []
        finals: list[Relayed] = []
        for data, first, last in pieces:
            if first and last:  # a whole message
                if len(data) >= BIG_MESSAGE:
                    self._carried_big = True
                relayed = filter_.from_upstream(data)
            elif self._long is not None:  # more of a long reply being relayed as it comes
                self._long.check(data, last=last)
                parts.append(data)
                if not last:
                    continue
                parts.append(b"\n")
                finals.append(self._long.start)  # its start went out when it came
                self._long = None
                continue
            elif self._gathered is not None:  # more of one that must be read whole first
                self._gathered.append(data)
                if not last:
                    continue
                whole = b"".join(self._gathered)
                self._gathered = None
                self._carried_big |= len(whole) >= BIG_MESSAGE
                relayed = filter_.from_upstream(whole)
            else:  # the start of a long message
                start = filter_.start_long_reply(data)
                if start is None:
                    self._gathered = [data]
                else:
                    self._long = _LongReply(start)
                    parts += start.parts
                continue
            parts += relayed.parts
            if relayed.status is not None and relayed.sent_at is not None:
                finals.append(relayed)
        if parts:
            if len(parts) == 1 or sum(map(len, parts)) <= _JOIN_BELOW:
                self._client.write(b"".join(parts))  # one TLS record for a short reply
            else:
                self._client.transport.writelines(parts)  # type: ignore[union-attr]
        # Recorded after the reply went out: the client does not wait for the audit log.
        now = time.monotonic()
        for relayed in finals:
            latency = now - relayed.sent_at  # type: ignore[operator]
            self._latency.observe(latency)
            self._record(
                self._event(
                    "reply",
                    command=relayed.command,
                    status=relayed.status,
                    latency_ms=round(latency * 1000, 3),
                )
            )
        if filter_.broken:
            self._refuse_stream(filter_.broken)
            return
        if self._queue and not filter_.awaiting_level:
            self._take_queued()

    def _take_queued(self) -> None:
        while self._queue and not self.filter.awaiting_level and not self._done.done():
            waiting = list(self._queue)
            self._queue.clear()
            self._take(waiting)
        if not self._queue:
            self._resume_client("an ACC awaits the instrument's answer")

    # ---------------------------------------------------------------- time limits

    def _schedule_tick(self, now: float) -> None:
        limits = self._limits
        wake = min(
            self._expires,
            self._started + limits.max_session,
            self._last_activity + limits.idle_timeout,
        )
        self._timer = self._loop.call_later(max(0.05, wake - now), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._done.done():
            return
        limits = self._limits
        now = time.monotonic()
        if now >= self._expires:
            self._refuse_stream("the client certificate expired during the session")
            return
        if now - self._started >= limits.max_session:
            self._refuse_stream(f"session reached the maximum length of {limits.max_session:g} s")
            return
        if now - self._last_activity >= limits.idle_timeout:
            self._end(f"idle for {limits.idle_timeout:g} s")
            return
        self._schedule_tick(now)

    def _refuse_stream(self, reason: str) -> None:
        """Tell the client why its session ends (ident 0: no command of its is to blame)."""
        with contextlib.suppress(OSError, RuntimeError):
            self._client.write(self._protocol.error_line(0, "IOError", reason))
        self._end(reason)

    def _count(self, decision: str) -> None:
        metrics = self._metrics
        metrics.child(metrics.commands, self.info.instrument.name, decision).inc()

    def _event(self, kind: str, **fields: object) -> dict[str, object]:
        event = self._base.copy()  # what every record of this session carries
        event["event"] = kind
        event["level"] = self._protocol.level_name(self.filter.level)
        event.update(fields)
        return event
