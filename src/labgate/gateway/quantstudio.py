"""QuantStudio's SCPI as the gateway's line protocol (see `protocol`): the one module of the
gateway's connection handling that reaches into `labgate.scpi` for the wire format.

It wires the core's functions into a `LineProtocol`: tag-stack framing, the `READy` greeting and
the `CHAL?`/`AUTH` login, the refused client's `READy -refused=` and `ERRor` lines, `QUIT`, the
`ACC` probe of how far the gateway's password reaches, the five levels' names, the LABGATE
policy table and the session filter that judges by it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ssl

from labgate.gateway.config import FramingLimits, InstrumentConfig, read_secret
from labgate.gateway.errors import UpstreamError
from labgate.gateway.filter import QUIT, SessionFilter, one_line
from labgate.gateway.protocol import LineProtocol
from labgate.gateway.upstream import InstrumentStream, UpstreamConnection
from labgate.scpi.access import LABGATE, AccessLevel
from labgate.scpi.errors import ScpiError
from labgate.scpi.framing import Decoder
from labgate.scpi.messages import (
    Command,
    Error,
    Next,
    Ok,
    Ready,
    Reply,
    parse_command,
    parse_reply,
    serialise,
)
from labgate.scpi.messages import Warning as WarningReply
from labgate.scpi.names import canonical

# A refused client's first command may be no longer than this; it has no business sending files.
FIRST_COMMAND_LIMIT = FramingLimits(max_line=4096, max_message=4096, max_depth=4)


def refused_greeting(error_class: str) -> bytes:
    """qslib reads a `READy` before anything else and cannot show an error in its place: the
    refused client gets one of the gateway's own, marked for anyone reading by hand."""
    return serialise(Ready(options=(("product", "labgate-gateway"), ("refused", error_class))))


def first_ident(message: bytes) -> int:
    try:
        return parse_command(message).ident
    except ScpiError:
        return 0


def error_line(ident: int, error_class: str, reason: str) -> bytes:
    """`ERRor <ident> [<Class>] --> <reason>`, which qslib raises naming the reason."""
    return serialise(
        Error(ident=ident, error_class=error_class, fields=(), message=one_line(reason))
    )


def goodbye(next_ident: int) -> bytes:
    return serialise(Command(ident=next_ident, name="QUIT", options=(), args=(), body=None))


@functools.lru_cache(maxsize=64)
def session_number(greeting: bytes) -> str | None:
    """The instrument's number for a connection (`-session=` of its greeting). Read once per
    greeting: a warm connection is lent, with the same greeting, many times."""
    try:
        ready = parse_reply(greeting.rstrip(b"\n"))
    except ScpiError:
        return None
    if not isinstance(ready, Ready):
        return None
    return dict(ready.options).get("session")


async def login(
    instrument: InstrumentConfig, stream: InstrumentStream, writer: asyncio.StreamWriter
) -> UpstreamConnection:
    """Read the instrument's `READy`, then answer its challenge with the password, if one is set."""
    upstream = UpstreamConnection(stream=stream, writer=writer, greeting=b"", protocol=QUANTSTUDIO)
    first = await _next_message(upstream)
    if not isinstance(parse_reply(first), Ready):
        raise UpstreamError(f"instrument {instrument.name!r} did not greet with READy")
    upstream.greeting = first + b"\n"
    if instrument.password_file is not None:
        password = read_secret(instrument.password_file, f"{instrument.name}.password_file")
        challenge = await _request(upstream, "CHAL?", ())
        response = hmac.new(password, challenge.text.strip().encode(), hashlib.md5).hexdigest()
        try:
            await _request(upstream, "AUTH", (response,))
        except UpstreamError:
            # Clients read this too: the file is named by its option, not by its path.
            raise UpstreamError(
                f"instrument {instrument.name!r} refused the gateway's password (AUTH): "
                "check its password_file"
            ) from None
    return upstream


async def _request(upstream: UpstreamConnection, name: str, args: tuple[str, ...]) -> Ok:
    reply = await _ask(upstream, name, args)
    if isinstance(reply, Ok):
        return reply
    # The reply is logged by name only: it may echo what was sent, and AUTH carries a secret.
    raise UpstreamError(f"the instrument refused the gateway's {canonical(name)}")


async def _ask(
    upstream: UpstreamConnection,
    name: str,
    args: tuple[str, ...],
    options: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """Send one command of the gateway's own and return its final reply."""
    ident = upstream.next_ident
    upstream.next_ident += 1
    upstream.writer.write(
        serialise(Command(ident=ident, name=name, options=options, args=args, body=None))
    )
    while True:
        reply: Reply = parse_reply(await _next_message(upstream))
        if getattr(reply, "ident", None) != ident or isinstance(reply, Next):
            continue  # a MESSage or a stray reply during login is not ours
        return reply


async def highest_level(
    upstream: UpstreamConnection, instrument: InstrumentConfig, up_to: AccessLevel
) -> AccessLevel:
    """The highest access level, at most `up_to`, that the gateway's login (the instrument's
    password, or none) reaches on the instrument: asked with `ACC` on a logged-in connection,
    from `up_to` down, following the `-accessLimit` the instrument names when it refuses.

    The connection is left at that level, neither stealthy nor exclusive. Raises UpstreamError
    when the instrument fails."""
    try:
        async with asyncio.timeout(instrument.upstream_timeout):
            wanted = up_to
            while True:
                reply = await _ask(
                    upstream, "ACC", (wanted.label,), (("stealth", "false"), ("exclusive", "false"))
                )
                if isinstance(reply, Ok | WarningReply):
                    return wanted
                if wanted is AccessLevel.GUEST:
                    raise UpstreamError(
                        f"instrument {instrument.name!r} refused even Guest access to the gateway"
                    )
                wanted = min(_access_limit(reply), AccessLevel(wanted - 1))
    except TimeoutError as exc:
        raise UpstreamError(
            f"instrument {instrument.name!r}: no answer to ACC within "
            f"{instrument.upstream_timeout:g} s"
        ) from exc
    except (OSError, ssl.SSLError, ScpiError) as exc:
        raise UpstreamError(f"instrument {instrument.name!r}: {exc}") from exc


def _access_limit(reply: Reply) -> AccessLevel:
    """The `-accessLimit="Controller"` of an instrument's refusal (FULL when it names none)."""
    fields = dict(reply.fields) if isinstance(reply, Error) else {}
    try:
        return AccessLevel.parse(fields.get("accessLimit", "").strip('"'))
    except ValueError:
        return AccessLevel.FULL


async def _next_message(upstream: UpstreamConnection) -> bytes:
    """The next message during login; those after it stay queued in the stream for the session
    (`InstrumentStream.messages` returns them first)."""
    try:
        messages = await upstream.stream.messages()
    except ScpiError as exc:
        raise UpstreamError(f"the instrument sent something that is not SCPI: {exc}") from exc
    if not messages:
        raise UpstreamError("the instrument closed the connection during login")
    upstream.stream.put_back(messages[1:])
    return messages[0]


def _level_name(level: AccessLevel) -> str:
    return level.label


QUANTSTUDIO = LineProtocol(
    name="quantstudio",
    decoder=Decoder,
    first_command_limits=FIRST_COMMAND_LIMIT,
    refused_greeting=refused_greeting,
    first_ident=first_ident,
    error_line=error_line,
    quit_command=QUIT,
    login=login,
    goodbye=goodbye,
    session_number=session_number,
    highest_level=highest_level,
    level_name=_level_name,
    parse_level=AccessLevel.parse,
    policy=LABGATE,
    session_filter=SessionFilter,
)
