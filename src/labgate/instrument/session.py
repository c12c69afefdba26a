"""One client connection: greeting, framing, access checks, dispatch, replies and events.

Bytes go through the scpi core's `Decoder`; each framed message is parsed with `parse_command`,
recorded in the command log, checked against the instrument's own level table, and handed to a
command handler. A handler answers at once (`Ok`, `Error`) or with `Deferred`: the session says
`NEXT n` now and sends the final reply when the work is done, while it keeps reading (qslib sends
`QUIT` right after the `NEXT` of `PAUSe`). Which handler answers which command is the table the
session is given (`commands.COMMANDS` in a simulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from labgate.instrument.commandlog import RAW_LIMIT, CommandLog
from labgate.instrument.dispatch import CommandTable
from labgate.instrument.outcomes import Deferred, Outcome, Refusal, error, one_line
from labgate.instrument.state import InstrumentState
from labgate.scpi import access, sensitive
from labgate.scpi.access import AccessLevel, Denied
from labgate.scpi.errors import FramingError, MessageError, ParseError
from labgate.scpi.framing import Decoder
from labgate.scpi.messages import (
    Command,
    Error,
    Message,
    Next,
    Ready,
    Reply,
    parse_command,
    serialise,
)

log = logging.getLogger("labgate.instrument")

READ_CHUNK = 64 * 1024
# A subscriber that stops reading is not allowed to make us buffer without bound: events for it
# are dropped while this much is already waiting to be sent.
EVENT_BACKLOG = 1024 * 1024
READY_OPTIONS = (
    ("product", "QuantStudio3_5"),
    ("version", "1.3.0"),
    ("build", "001"),
    ("capabilities", "Index"),
)


@dataclass(slots=True, kw_only=True)
class Security:
    """What every session of one simulator shares about access. `CONF=` (Full) changes it for
    sessions that start afterwards; `interface_limits` holds limits other than the default's."""

    passwords: dict[str, AccessLevel] = field(repr=False)
    access_limit: AccessLevel
    interface_limits: dict[str, AccessLevel] = field(default_factory=dict)


class Session:
    """The state of one connection; `serve` runs it to the end."""

    def __init__(
        self,
        *,
        state: InstrumentState,
        security: Security,
        commands: CommandLog,
        handlers: CommandTable,
        listener: str,
        peer: str,
        writer: asyncio.StreamWriter,
        idle_timeout: float | None = None,
    ) -> None:
        self.state = state
        self.security = security
        self.commands = commands
        self.handlers = handlers
        self.listener = listener
        self.peer = peer
        self.number = state.new_session_number()
        self.level = AccessLevel.GUEST
        self.ceiling = security.access_limit
        self.stealth = False
        self.exclusive = False
        self.challenge: str | None = None
        self.topics: set[str] = set()
        self.timestamps = False
        self.quitting = False
        self.idle_timeout = idle_timeout
        self._writer = writer
        self._pending: set[asyncio.Task[None]] = set()

    # -- the connection ---------------------------------------------------------------------
    async def serve(self, reader: asyncio.StreamReader) -> None:
        self.state.listen(self.on_event)
        try:
            ready = Ready(options=(("session", str(self.number)), *READY_OPTIONS))
            await self.send(ready)
            await self._read_loop(reader)
        except (ConnectionError, OSError) as exc:
            log.info("session %s (%s): connection lost: %s", self.number, self.peer, exc)
        finally:
            self.state.unlisten(self.on_event)
            for task in list(self._pending):
                task.cancel()
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                self._writer.close()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        decoder = Decoder()
        while not self.quitting:
            data = await self._receive(reader)
            if data is None:
                log.info("session %s (%s): nothing received for %s s, closing",
                         self.number, self.peer, self.idle_timeout)  # fmt: skip
                return
            if not data:
                try:
                    decoder.close()
                except FramingError:
                    log.info("session %s (%s): ended mid-message", self.number, self.peer)
                return
            try:
                messages = decoder.feed(data)
            except FramingError as exc:
                # The stream cannot be resynchronised: say why, then hang up.
                log.warning("session %s (%s): %s", self.number, self.peer, exc)
                self._record({"command": None, "error": str(exc), "raw": ""})
                await self.send(error(0, "InvocationError", f"input refused: {exc}"))
                return
            for raw in messages:
                await self.handle(raw)
                if self.quitting:
                    return

    async def _receive(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next bytes (empty at the end of the stream), or None once the client has been
        silent for `idle_timeout`. A client waiting for the final reply to its own `NEXT` is not
        idle: the wait is the instrument's, not the client's."""
        while True:
            try:
                # Cancelling a pending read loses nothing: unread bytes stay in the reader.
                async with asyncio.timeout(self.idle_timeout):
                    return await reader.read(READ_CHUNK)
            except TimeoutError:
                if not self._pending:
                    return None

    # -- one message ------------------------------------------------------------------------
    async def handle(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            command = parse_command(raw)
        except ParseError as exc:
            if sensitive.may_bear_secret(raw):  # the parser's excerpt may hold a password
                self._record({"command": None, "raw": "[redacted]", "error": "[redacted]"})
            else:
                self._record({"command": None, "raw": _shown(raw), "error": str(exc)})
            await self.send(error(_leading_ident(raw), "InvocationError", str(exc)))
            return
        self._record(_entry(command, raw))
        try:
            outcome = await self.execute(command)
        except Exception:  # a bug in one handler must not take the session or the server down
            log.exception("session %s: %s failed", self.number, command.canonical)
            outcome = error(command.ident, "InvocationError", "internal error in the simulator")
        if isinstance(outcome, Deferred):
            await self.send(Next(ident=command.ident))
            task = asyncio.create_task(self._finish(command.ident, outcome))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        else:
            await self.send(outcome)
        if command.canonical == "QUIT":
            self.quitting = True

    async def execute(self, command: Command) -> Outcome:
        """Check access, then run the command's handler (also used for nested `$(...)`)."""
        decision = access.check(command, self.level, access.INSTRUMENT)
        if isinstance(decision, Denied):
            return insufficient(command.ident, decision, self.level)
        entry = self.handlers.get(command.canonical)
        if entry is None:
            return error(command.ident, "InvocationError", f"Unknown command {command.name}")
        try:
            return await entry.handler(self, command)
        except Refusal as refusal:
            return refusal.reply
        except ParseError as exc:
            return error(command.ident, "InvocationError", str(exc))

    async def _finish(self, ident: int, deferred: Deferred) -> None:
        reply = await deferred.work()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            await self.send(reply)

    # -- output -----------------------------------------------------------------------------
    async def send(self, message: Reply) -> None:
        try:
            data = serialise(message)
        except MessageError as exc:
            # A reply we cannot frame must not corrupt the stream; say so instead.
            ident = getattr(message, "ident", 0)
            data = serialise(error(ident, "InvocationError", "reply could not be encoded"))
            log.error("session %s: reply not sent: %s", self.number, exc)
        self._writer.write(data)
        await self._writer.drain()

    def on_event(self, topic: str, text: str) -> None:
        if topic.lower() not in self.topics or self._writer.is_closing():
            return
        transport = self._writer.transport
        if transport.get_write_buffer_size() > EVENT_BACKLOG:
            return
        stamp = round(time.time(), 3) if self.timestamps else None
        with contextlib.suppress(MessageError):
            self._writer.write(serialise(Message(topic=topic, timestamp=stamp, text=text)))

    def _record(self, entry: dict[str, Any]) -> None:
        entry.update(
            t=round(time.time(), 6),
            session=self.number,
            listener=self.listener,
            peer=self.peer,
            level=self.level.label,
        )
        self.commands.record(entry)


def insufficient(ident: int, decision: Denied, current: AccessLevel) -> Error:
    return Error(
        ident=ident,
        error_class="InsufficientAccess",
        fields=(
            # Quoted as the instrument writes them (labels are single words).
            ("requiredAccess", f'"{decision.required.label}"'),
            ("currentAccess", f'"{current.label}"'),
        ),
        message=one_line(f"{decision.command} requires {decision.required.label} access"),
    )


def _leading_ident(raw: bytes) -> int:
    head = raw.split(b" ", 1)[0]
    return int(head) if head.isdigit() and len(head) < 18 else 0


def _shown(raw: bytes) -> str:
    return raw[:RAW_LIMIT].decode("utf-8", errors="backslashreplace")


def _entry(command: Command, raw: bytes) -> dict[str, Any]:
    # An AUTH answer is derived from a password, and CONF access lines carry passwords in clear:
    # the list of such commands, every spelling and nesting, is the gateway's (`sensitive`).
    body = None if command.body is None else command.body.content
    name, canonical = command.name, command.canonical
    if sensitive.bears_secret(command.name, command.options, command.args, body):
        if not sensitive.plain_name(name):  # a name such as `$(CONF* ... <password> ...)`
            name = canonical = "[name withheld]"
        shown = f"{command.ident} {name} [redacted]"
    elif command.body is not None:
        shown = _shown(raw.split(b"<", 1)[0])
    else:
        shown = _shown(raw)
    entry: dict[str, Any] = {
        "ident": command.ident,
        "name": name,
        "command": canonical,
        "raw": shown,
        "size": len(raw),
    }
    if command.body is not None:
        entry["body"] = {"tag": command.body.tag, "size": len(command.body.content)}
    return entry
