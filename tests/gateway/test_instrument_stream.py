"""The instrument's side of a session, over a real loopback socket: messages in order however
they were cut, reading paused while messages wait untaken, a framing limit ends the stream with
FramingError, and the end of the stream is an empty batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from labgate.gateway.upstream import InstrumentStream
from labgate.scpi.errors import FramingError
from labgate.scpi.framing import Decoder, Limits


async def _with_instrument(
    sends: Callable[[asyncio.StreamWriter], Awaitable[None]], limits: Limits | None = None
) -> tuple[InstrumentStream, asyncio.Transport, asyncio.Server]:
    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await sends(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stream = InstrumentStream(Decoder(limits))
    transport, _ = await asyncio.get_running_loop().create_connection(
        lambda: stream, "127.0.0.1", port
    )
    return stream, transport, server


def test_messages_come_in_order_and_put_back_ones_first() -> None:
    async def sends(writer: asyncio.StreamWriter) -> None:
        writer.write(b"READy -x=1\nOK 0 <quote>a\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"b</quote>\nOK 1\n")
        writer.close()

    async def main() -> list[bytes]:
        stream, transport, server = await _with_instrument(sends)
        got: list[bytes] = []
        first = await stream.messages()
        stream.put_back(first[1:])
        got.append(first[0])
        while batch := await stream.messages():
            got.extend(batch)
        transport.close()
        server.close()
        return got

    assert asyncio.run(main()) == [b"READy -x=1", b"OK 0 <quote>a\nb</quote>", b"OK 1"]


def test_reading_pauses_while_messages_wait_untaken() -> None:
    async def sends(writer: asyncio.StreamWriter) -> None:
        writer.write(b"OK 0\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"OK 1\n" * 1000)
        await writer.drain()

    async def main() -> tuple[bool, bool]:
        stream, transport, server = await _with_instrument(sends)
        await asyncio.sleep(0.1)  # OK 0 has arrived and is not taken
        paused = not transport.is_reading()
        assert await stream.messages() == [b"OK 0"]
        resumed = transport.is_reading()
        transport.close()
        server.close()
        return paused, resumed

    assert asyncio.run(main()) == (True, True)


def test_a_framing_limit_ends_the_stream_with_framing_error() -> None:
    async def sends(writer: asyncio.StreamWriter) -> None:
        writer.write(b"OK 0 " + b"x" * 200)  # no end of line within max_line
        await writer.drain()

    async def main() -> None:
        stream, transport, server = await _with_instrument(sends, Limits(max_line=100))
        try:
            with pytest.raises(FramingError):
                await stream.messages()
        finally:
            transport.close()
            server.close()

    asyncio.run(main())
