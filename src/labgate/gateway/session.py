"""One client session: relay between a verified client and its own upstream connection, every
message through the session filter, every decision into the audit log.

The client is greeted with the READy line its upstream connection received when it was opened:
a warm connection (see `slots`) keeps its own greeting, which is still the true one for that
connection (its session number is the instrument's for it), not one made up by the gateway.

The session ends when either side closes, when the idle timeout or the maximum session length
passes, when a framing limit is crossed, or when the gateway closes it (identity revoked, grant
withdrawn, gateway stopping). Whatever the cause, it is recorded once, with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labgate.gateway.client_tls import PeerCertificate
from labgate.gateway.config import InstrumentConfig, SessionLimits
from labgate.gateway.filter import Decision, SessionFilter, Verdict, one_line
from labgate.gateway.heap import BIG_MESSAGE, give_back_free_memory
from labgate.gateway.metrics import GatewayMetrics
from labgate.gateway.upstream import UpstreamConnection
from labgate.scpi.access import AccessLevel
from labgate.scpi.errors import FramingError
from labgate.scpi.framing import Decoder
from labgate.scpi.messages import Error, serialise

_READ_SIZE = 256 * 1024
log = logging.getLogger("labgate.gateway")

Record = Callable[[Mapping[str, object]], bool]  # audit: False when the record could not be kept
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


class Session:
    def __init__(
        self,
        *,
        info: SessionInfo,
        grant: AccessLevel,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: UpstreamConnection,
        limits: SessionLimits,
        record: Record,
        metrics: GatewayMetrics,
        give_back: GiveBack | None = None,
    ) -> None:
        self.info = info
        self.filter = SessionFilter(
            grant=grant,
            next_ident=upstream.next_ident,
            keep_upstream=give_back is not None and info.instrument.upstream_idle > 0,
        )
        self._give_back = give_back
        self._reader, self._writer = client
        self._upstream = upstream
        self._limits = limits
        self._record = record
        self._metrics = metrics
        self._last_activity = time.monotonic()
        self._ended = asyncio.Event()
        self._forced = False
        self._counters: dict[str, Any] = {}
        self._latency = metrics.upstream_latency.labels(info.instrument.name)
        self._settled = asyncio.Event()  # set whenever no ACC is awaiting the instrument's answer
        self._carried_big = False  # a message of BIG_MESSAGE or more went through
        self.end_reason = ""

    def close(self, reason: str) -> None:
        """End the session from outside (revocation, withdrawn grant, shutdown): the client's
        connection is cut at once, whatever it was still to receive."""
        self._forced = True
        self._end(reason)

    def change_grant(self, level: AccessLevel) -> None:
        """A lowered grant lowers the session level at once (and the instrument's with it)."""
        if level < self.filter.level:
            self._record(self._event("level_lowered", level=level.label, reason="grant lowered"))
        command = self.filter.lower_grant(level, now=time.monotonic())
        if command:
            self._upstream.writer.write(command)

    async def run(self) -> None:
        self._writer.write(self._upstream.greeting)
        tasks = [
            asyncio.create_task(self._from_client()),
            asyncio.create_task(self._from_upstream()),
            asyncio.create_task(self._watch_time()),
        ]
        for task in tasks:
            task.add_done_callback(self._end_on_failure)
        try:
            await self._ended.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._forced:
                self._writer.transport.abort()
            else:
                self._writer.close()  # the last reply (QUIT's OK, a refusal) still goes out
            keep = self._upstream_reusable()
            # Recorded as the client is let go, before the slower goodbye to the instrument.
            self._record(self._event("disconnect", reason=self.end_reason, upstream_kept=keep))
            await self._release_upstream(keep)
            if not self._forced:
                with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                    async with asyncio.timeout(2):  # a client that reads nothing is cut off
                        await self._writer.wait_closed()
            if self._carried_big:
                give_back_free_memory()

    def _upstream_reusable(self) -> bool:
        return (
            not self._forced
            and self.end_reason in _CLEAN_ENDS
            and self.filter.reusable
            and self._upstream.stream.quiet
        )

    async def _release_upstream(self, keep: bool) -> None:
        self._upstream.next_ident = self.filter.next_ident  # a later user goes on from here
        if self._give_back is None:
            await self._upstream.close()
        else:
            await self._give_back(self._upstream, keep)

    def _end_on_failure(self, task: asyncio.Task[None]) -> None:
        # A bug in one direction ends the session (and is logged) instead of leaving it half alive.
        if not task.cancelled() and task.exception() is not None:
            log.error("session %d: %r", self.info.conn, task.exception())
            self._end(f"internal error: {type(task.exception()).__name__}")

    def _end(self, reason: str) -> None:
        if not self._ended.is_set():
            self.end_reason = reason
            self._ended.set()

    async def _from_client(self) -> None:
        decoder = Decoder(self._limits.framing)
        try:
            while data := await self._reader.read(_READ_SIZE):
                self._last_activity = time.monotonic()
                for raw in decoder.feed(data):
                    self._carried_big |= len(raw) >= BIG_MESSAGE
                    self._handle(self.filter.from_client(raw, now=time.monotonic()))
                    if self.filter.quit:
                        self._end("client quit")  # what follows QUIT is not read, as upstream
                        return
                    while self.filter.awaiting_level:  # pipelined commands wait for the ACC
                        await self._upstream.writer.drain()
                        self._settled.clear()
                        await self._settled.wait()
                await self._upstream.writer.drain()
                await self._writer.drain()
            decoder.close()
            self._end("client closed")
        except FramingError as exc:
            self._refuse_stream(f"client broke a framing limit: {exc}")
        except (OSError, ssl.SSLError) as exc:
            self._end(f"client connection lost: {exc}")

    def _handle(self, verdict: Verdict) -> None:
        event = self._event(
            "command",
            command=verdict.command,
            args=list(verdict.args),
            decision=verdict.decision.value,
            reason=verdict.reason,
        )
        if verdict.payload is not None:
            event["payload"] = {"bytes": verdict.payload.size, "sha256": verdict.payload.sha256}
        if not self._record(event):
            # Fail closed: a command that cannot be recorded is not forwarded.
            self._count("unrecorded")
            self._refuse_stream("the audit log cannot record commands; none is forwarded")
            return
        self._count(verdict.decision.value)
        if verdict.to_client:
            self._writer.write(verdict.to_client)
        if verdict.to_upstream:
            self._upstream.writer.write(verdict.to_upstream)
        if verdict.decision is Decision.MALFORMED:
            self._last_activity = time.monotonic()

    async def _from_upstream(self) -> None:
        stream = self._upstream.stream
        try:
            while messages := await stream.messages():
                self._last_activity = time.monotonic()
                self._relay(messages)
                await self._writer.drain()
            self._end("instrument closed")
        except FramingError as exc:
            self._end(f"instrument broke a framing limit: {exc}")
        except (OSError, ssl.SSLError) as exc:
            self._end(f"instrument connection lost: {exc}")

    def _relay(self, messages: list[bytes]) -> None:
        for raw in messages:
            self._carried_big |= len(raw) >= BIG_MESSAGE
            relayed = self.filter.from_upstream(raw)
            if not self.filter.awaiting_level:
                self._settled.set()
            for part in relayed.parts:
                self._writer.write(part)
            if relayed.status is not None and relayed.sent_at is not None:
                latency = time.monotonic() - relayed.sent_at
                self._latency.observe(latency)
                self._record(
                    self._event(
                        "reply",
                        command=relayed.command,
                        status=relayed.status,
                        latency_ms=round(latency * 1000, 3),
                    )
                )

    async def _watch_time(self) -> None:
        limits = self._limits
        started = time.monotonic()
        # A session does not outlive the certificate it was admitted with.
        expires = started + (self.info.certificate.not_after - datetime.now(UTC)).total_seconds()
        while True:
            now = time.monotonic()
            if now >= expires:
                self._refuse_stream("the client certificate expired during the session")
                return
            if now - started >= limits.max_session:
                self._refuse_stream(
                    f"session reached the maximum length of {limits.max_session:g} s"
                )
                return
            if now - self._last_activity >= limits.idle_timeout:
                self._end(f"idle for {limits.idle_timeout:g} s")
                return
            wake = min(
                expires, started + limits.max_session, self._last_activity + limits.idle_timeout
            )
            await asyncio.sleep(max(0.05, wake - now))

    def _refuse_stream(self, reason: str) -> None:
        """Tell the client why its session ends (ident 0: no command of its is to blame)."""
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.write(
                serialise(
                    Error(ident=0, error_class="IOError", fields=(), message=one_line(reason))
                )
            )
        self._end(reason)

    def _count(self, decision: str) -> None:
        # Labelled children are looked up once per session, not once per command.
        counter = self._counters.get(decision)
        if counter is None:
            counter = self._metrics.commands.labels(self.info.instrument.name, decision)
            self._counters[decision] = counter
        counter.inc()

    def _event(self, kind: str, **fields: object) -> dict[str, object]:
        info = self.info
        return {
            "event": kind,
            "conn": info.conn,
            "identity": info.identity,
            "fingerprint": info.certificate.fingerprint,
            "instrument": info.instrument.name,
            "level": self.filter.level.label,
            **fields,
        }
