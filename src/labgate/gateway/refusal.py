"""How a client whose certificate verified is told no, in words its software can show.

The real client reads a `READy` greeting before anything else and cannot show an error that comes
in its place ("Failed to parse ready message"). So the gateway greets with a `READy` of its own,
marked `-refused=<Class>` for anyone reading by hand, and answers the client's first command with
`ERRor <ident> [<Class>] --> <reason>`, which qslib raises as a CommandError naming the reason.
Then it closes. Nothing of this reaches an instrument.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from labgate.gateway.accept import ClientSide
from labgate.gateway.filter import one_line
from labgate.scpi.errors import ScpiError
from labgate.scpi.framing import Decoder, Limits
from labgate.scpi.messages import Error, Ready, parse_command, serialise

# A refused client gets this long to send its first command; the real client sends it at once.
ANSWER_WAIT = 5.0
# Its first command may be no longer than this; a refused client has no business sending files.
FIRST_COMMAND_LIMIT = Limits(max_line=4096, max_message=4096, max_depth=4)


async def tell_refused(client: ClientSide, *, error_class: str, reason: str) -> None:
    greeting = Ready(options=(("product", "labgate-gateway"), ("refused", error_class)))
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError, RuntimeError):
        client.write(serialise(greeting))
        ident = await _first_ident(client)
        if ident is not None:
            error = Error(ident=ident, error_class=error_class, message=one_line(reason))
            client.write(serialise(error))
        async with asyncio.timeout(2):
            await client.drain()
        client.close()
        async with asyncio.timeout(2):
            await client.wait_closed()


async def _first_ident(client: ClientSide) -> int | None:
    """The ident of the client's first command (0 if it is not a command); None if none came."""
    decoder = Decoder(FIRST_COMMAND_LIMIT)
    try:
        async with asyncio.timeout(ANSWER_WAIT):
            while data := await client.read():
                messages = decoder.feed(data)
                if messages:
                    try:
                        return parse_command(messages[0]).ident
                    except ScpiError:
                        return 0
    except (TimeoutError, ScpiError):
        return 0
    return None
