"""How a client whose certificate verified is told no, in words its software can show.

The real client reads the instrument's greeting before anything else and cannot show an error
that comes in its place ("Failed to parse ready message"). So the gateway greets with one of its
own, marked refused for anyone reading by hand, and answers the client's first command with an
error line naming the class and the reason, which qslib raises as a CommandError. Then it closes.
Nothing of this reaches an instrument. The lines are the instrument's line protocol's (see
`protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from labgate.gateway.accept import ClientSide
from labgate.gateway.protocol import LineProtocol
from labgate.scpi.errors import ScpiError

# A refused client gets this long to send its first command; the real client sends it at once.
ANSWER_WAIT = 5.0


async def tell_refused(
    client: ClientSide, *, error_class: str, reason: str, protocol: LineProtocol | None = None
) -> None:
    """Greet `client` as refused, answer its first command with the reason, close. `protocol`:
    the line protocol to say it in (by default QuantStudio's, the only one there is)."""
    if protocol is None:
        from labgate.gateway.quantstudio import QUANTSTUDIO

        protocol = QUANTSTUDIO
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError, RuntimeError):
        client.write(protocol.refused_greeting(error_class))
        ident = await _first_ident(client, protocol)
        if ident is not None:
            client.write(protocol.error_line(ident, error_class, reason))
        async with asyncio.timeout(2):
            await client.drain()
        client.close()
        async with asyncio.timeout(2):
            await client.wait_closed()


async def _first_ident(client: ClientSide, protocol: LineProtocol) -> int | None:
    """The ident of the client's first command (0 if it is not a command); None if none came."""
    decoder = protocol.decoder(protocol.first_command_limits)
    try:
        async with asyncio.timeout(ANSWER_WAIT):
            while data := await client.read():
                messages = decoder.feed(data)
                if messages:
                    return protocol.first_ident(messages[0])
    except (TimeoutError, ScpiError):
        return 0
    return None
