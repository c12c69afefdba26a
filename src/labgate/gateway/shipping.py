"""Shipping the audit log to the control server: in order, in batches, from where it stands.

A task of its own reads the log's file, never the writer's queue: it costs the writer nothing,
and what it sends is what is on disk. It sends only records at or below the log's durable point
(written and fsynced), so nothing it ships can be lost in a crash and then written again
differently, which the server would rightly call a fork.

Theory of operation
-------------------
1. Ask the server where this gateway's chain stands (`GET /api/v1/gateways/{name}/audit`):
   log id, seq and hash of the last record it holds.
2. Find the next record in the file. Every line of a log is one record and seq counts lines from
   0, so record N starts after N newlines: the shipper counts them in a bounded buffer. If the
   server holds another log (or none), it sends this one from its start; the server decides
   whether a new log may begin (after a clean `log-stop`) or is a replaced one.
3. Send complete lines, at most `ship_batch` records and `MAX_BATCH_BYTES`, up to the durable
   point; on success move on, else back off (1 s doubling to `ship_max_backoff`) and start
   again at 1, so a lost reply or an outage is recovered by asking again (the server takes a
   batch it already holds once). When caught up it looks again every `ship_interval` seconds.

Memory is bounded by one batch. A refusal (a gap, a fork, a replaced log: the file was changed
under the gateway) is logged as an error once per distinct answer and counted; the shipper keeps
asking, since only a person can settle it, and the server keeps the divergence on record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labgate.gateway.audit import AuditLog
from labgate.gateway.auditchain import line_hash
from labgate.gateway.config import ControlConfig
from labgate.gateway.metrics import GatewayMetrics

if TYPE_CHECKING:
    from labgate.gateway.server import Gateway

log = logging.getLogger("labgate.gateway.shipping")

# The control server takes at most 1000 records and 1 MiB per batch; a record longer than this
# is sent alone (up to the server's limit).
MAX_BATCH_BYTES = 512 * 1024
READ_CHUNK = 64 * 1024
SCAN_CHUNK = 1024 * 1024  # read at a time while counting records to the server's head
FIRST_BACKOFF_SECONDS = 1.0


class ShippingError(Exception):
    """A batch or a head request failed; the shipper backs off and asks again."""


class LogShorter(ShippingError):
    """The file holds fewer records than the control server does: it was cut short."""

    def __init__(self, message: str, *, records: int) -> None:
        super().__init__(message)
        self.records = records


class ShippingRefused(ShippingError):
    """The server refused a batch as not continuing its chain (409) or as not a record (422)."""

    def __init__(self, message: str, *, code: str, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.body = body


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHead:
    log_id: str | None
    seq: int | None
    hash: str | None


class LogReader:
    """Complete lines of the log file from a given record on, read in bounded chunks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._inode: int | None = None
        self.offset = 0  # where record `next_seq` starts
        self.next_seq = 0
        self.log_id: str | None = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def changed(self) -> bool:
        """The path names another file than the one open (moved aside), or the file is shorter
        than where the next record should start (cut short while open)."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return True
        return status.st_ino != self._inode or status.st_size < self.offset

    def seek(self, seq: int) -> str | None:
        """Open the file afresh and stand before record `seq`; the hash of record `seq - 1` (to
        compare with the server's head), or None for seq 0. Fewer records: ShippingError."""
        self.close()
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        self._inode = os.fstat(self._fd).st_ino
        first = self._line_at(0)
        if first is None:
            raise ShippingError(f"audit log {self.path} has no complete first line yet")
        try:
            log_id = json.loads(first[1]).get("log_id")
        except (ValueError, AttributeError):
            log_id = None
        self.log_id = log_id if isinstance(log_id, str) else None
        self.offset = self._offset_of(seq)
        self.next_seq = seq
        if seq == 0:
            return None
        start = self._start_before(self.offset)
        return line_hash(os.pread(self._fd, self.offset - start, start))

    def _offset_of(self, seq: int) -> int:
        """Where record `seq` starts: after `seq` newlines, counted a chunk at a time."""
        assert self._fd is not None
        position, counted = 0, 0
        while counted < seq:
            chunk = os.pread(self._fd, SCAN_CHUNK, position)
            if not chunk:
                raise LogShorter(
                    f"audit log {self.path} holds {counted} records, the control server holds "
                    f"{seq}: the file was cut short",
                    records=counted,
                )
            newlines = chunk.count(b"\n")
            if counted + newlines < seq:
                counted += newlines
                position += len(chunk)
                continue
            end = -1
            for _ in range(seq - counted):
                end = chunk.find(b"\n", end + 1)
            return position + end + 1
        return position

    def _start_before(self, offset: int) -> int:
        """Where the line that ends just before `offset` starts."""
        assert self._fd is not None
        end = offset - 1  # its newline
        position = end
        while position > 0:
            low = max(0, position - READ_CHUNK)
            found = os.pread(self._fd, position - low, low).rfind(b"\n")
            if found >= 0:
                return low + found + 1
            position = low
        return 0

    def _line_at(self, offset: int) -> tuple[int, bytes] | None:
        """The line starting at `offset`: the offset after it and its bytes."""
        assert self._fd is not None
        parts: list[bytes] = []
        position = offset
        while True:
            chunk = os.pread(self._fd, READ_CHUNK, position)
            if not chunk:
                return None
            end = chunk.find(b"\n")
            if end >= 0:
                parts.append(chunk[: end + 1])
                return position + end + 1, b"".join(parts)
            parts.append(chunk)
            position += len(chunk)

    def batch(self, *, up_to_seq: int, records: int) -> list[bytes]:
        """Complete lines from `next_seq` up to seq `up_to_seq`, within the batch bounds."""
        assert self._fd is not None
        wanted = min(records, up_to_seq - self.next_seq + 1)
        if wanted <= 0:
            return []
        data = os.pread(self._fd, MAX_BATCH_BYTES, self.offset)
        lines = data.split(b"\n")[:-1]  # the part after the last newline is not a line yet
        if lines:
            return [line + b"\n" for line in lines[:wanted]]
        if len(data) < MAX_BATCH_BYTES:
            return []
        found = self._line_at(self.offset)  # one record longer than a batch: alone
        return [found[1]] if found is not None else []

    def advance(self, lines: list[bytes]) -> None:
        self.offset += sum(len(line) for line in lines)
        self.next_seq += len(lines)


class AuditShipper:
    """Ships `audit`'s file to the control server; `run()` until cancelled."""

    def __init__(
        self,
        control: ControlConfig,
        audit: AuditLog,
        *,
        cert: Path,
        key: Path,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.control = control
        self.audit = audit
        self.cert, self.key = cert, key
        self.metrics = metrics
        self.reader = LogReader(audit.path)
        self.shipped_seq = -1  # the server's head in this log, as last heard
        self._synced = False
        self._last_refusal: str | None = None
        self._idle = asyncio.Event()  # set while everything durable has been shipped
        if metrics is not None:
            metrics.audit_shipped_seq.set_function(lambda: self.shipped_seq)
            metrics.audit_ship_lag.set_function(
                lambda: max(0, self.audit.durable_seq - self.shipped_seq)
            )

    async def run(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        client = self._client()
        try:
            while True:
                try:
                    sent = await self._step(client)
                except ShippingError as exc:
                    self._failed(exc)
                    self._synced = False
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.control.ship_max_backoff)
                    # A new client, reading the certificate again: the gateway renews it
                    # (`labgate.gateway.renewal`), and the old one is refused once it expires.
                    await client.aclose()
                    client = self._client()
                    continue
                backoff = FIRST_BACKOFF_SECONDS
                if not sent:
                    self._idle.set()
                    await asyncio.sleep(self.control.ship_interval)
        finally:
            await client.aclose()
            self.reader.close()

    async def caught_up(self, timeout: float) -> bool:
        """Wait until everything durable now is shipped (for a clean stop); False on timeout."""
        target = self.audit.durable_seq
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.shipped_seq < target:
            self._idle.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=remaining)
            except TimeoutError:
                return False
        return True

    def _client(self) -> Any:
        import httpx

        context = ssl.create_default_context(cafile=str(self.control.server_ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return httpx.AsyncClient(
            base_url=self.control.url, verify=context, timeout=httpx.Timeout(30.0)
        )

    async def _step(self, client: Any) -> bool:
        """Send one batch if there is one; whether one was sent."""
        if not self._synced or await asyncio.to_thread(self.reader.changed):
            await self._sync(client)
        durable = self.audit.durable_seq
        if self.reader.next_seq > durable:
            return False
        lines = await asyncio.to_thread(
            self.reader.batch, up_to_seq=durable, records=self.control.ship_batch
        )
        if not lines:
            return False
        answer = await self._post(client, lines)
        self.reader.advance(lines)
        self.shipped_seq = int(answer["seq"])
        self._last_refusal = None
        return True

    async def _sync(self, client: Any) -> None:
        head = await self._head(client)
        path = self.reader.path
        try:
            await asyncio.to_thread(self.reader.seek, 0)
            ours = self.reader.log_id
            if head.log_id is not None and head.log_id == ours and head.seq is not None:
                try:
                    held = await asyncio.to_thread(self.reader.seek, head.seq + 1)
                except LogShorter as short:
                    # Send the file's last records: ones the server holds, so it compares them
                    # and records the fork if the file was written on after the cut.
                    if str(short) != self._last_refusal:
                        log.error("%s", short)
                        self._last_refusal = str(short)
                    back = max(0, short.records - self.control.ship_batch)
                    await asyncio.to_thread(self.reader.seek, back)
                    self.shipped_seq = head.seq
                    self._synced = True
                    return
                if held != head.hash:
                    log.error(
                        "audit log %s: record seq %d here hashes to sha256:%s, the control "
                        "server holds sha256:%s: the file was rewritten; the server will refuse "
                        "what follows", path, head.seq, held, head.hash,
                    )  # fmt: skip
                self.shipped_seq = head.seq
            else:
                self.shipped_seq = -1
        except OSError as exc:
            raise ShippingError(f"cannot read audit log {path}: {exc}") from exc
        self._synced = True

    async def _head(self, client: Any) -> ServerHead:
        import httpx

        try:
            response = await client.get(self._path())
        except httpx.HTTPError as exc:
            raise ShippingError(f"cannot reach {self.control.url}: {exc}") from exc
        if response.status_code != 200:
            raise ShippingError(
                f"{self.control.url} answered {response.status_code} to the audit head request: "
                f"{response.text[:300]}"
            )
        body = response.json()
        return ServerHead(log_id=body.get("log_id"), seq=body.get("seq"), hash=body.get("hash"))

    async def _post(self, client: Any, lines: list[bytes]) -> dict[str, Any]:
        import httpx

        try:
            response = await client.post(
                self._path(),
                params={"log": self.reader.log_id or ""},
                content=b"".join(lines),
                headers={"content-type": "application/x-ndjson"},
            )
        except httpx.HTTPError as exc:
            raise ShippingError(f"cannot reach {self.control.url}: {exc}") from exc
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        try:
            detail: dict[str, Any] = response.json()
        except ValueError:
            detail = {"message": response.text[:300]}
        if response.status_code in (409, 422):
            raise ShippingRefused(
                str(detail.get("message")), code=str(detail.get("code")), body=detail
            )
        raise ShippingError(
            f"{self.control.url} answered {response.status_code}: {detail.get('message')}"
        )

    def _path(self) -> str:
        return f"/api/v1/gateways/{self.control.gateway_name}/audit"

    def _failed(self, exc: ShippingError) -> None:
        if self.metrics is not None:
            kind = exc.code if isinstance(exc, ShippingRefused) else "unreachable"
            self.metrics.audit_ship_failures.labels(kind).inc()
        text = str(exc)
        if text == self._last_refusal:
            return  # the same answer again: said once
        self._last_refusal = text
        if isinstance(exc, ShippingRefused):
            log.error("the control server refused the audit log (%s): %s", exc.code, exc)
        else:
            log.warning("audit shipping: %s; trying again", exc)


# How long a stopping gateway waits for its last records (the log-stop among them) to be shipped.
STOP_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Shipping:
    shipper: AuditShipper
    task: asyncio.Task[None]


def start_shipping(gateway: Gateway) -> Shipping | None:
    """Start shipping `gateway`'s audit log if it has a `[control]` table that asks for it."""
    config = gateway.state.config
    control = config.control
    if control is None or not control.ship_audit:
        return None
    shipper = AuditShipper(
        control,
        gateway.audit,
        cert=control.cert or config.cert,
        key=control.key or config.key,
        metrics=gateway.metrics,
    )
    return Shipping(shipper=shipper, task=asyncio.create_task(shipper.run()))


async def stop_shipping(shipping: Shipping | None, *, wait: float = STOP_WAIT_SECONDS) -> None:
    """After the log is closed: ship what is left (within `wait` seconds), then stop."""
    if shipping is None:
        return
    if not shipping.task.done() and not await shipping.shipper.caught_up(wait):
        log.warning(
            "audit shipping: records up to seq %d not yet held by the control server at stop; "
            "they are shipped at the next start", shipping.shipper.audit.durable_seq,
        )  # fmt: skip
    shipping.task.cancel()
    await asyncio.gather(shipping.task, return_exceptions=True)
