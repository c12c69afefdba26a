"""Decoder.feed_pieces: long messages in tags handed out as they arrive, joined back exactly."""

import base64
import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labgate.scpi.errors import FramingError
from labgate.scpi.framing import MAX_TAG_NAME, Decoder, Limits, Piece

# SCPI_EXAMPLES=3000 for a longer hunt; the default keeps the suite fast.
PROPERTY = settings(
    max_examples=int(os.environ.get("SCPI_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# A possibly-cut tag kept back from a piece: `</` and a name of at most MAX_TAG_NAME characters.
LONGEST_CUT_TAG = MAX_TAG_NAME + 2


def join_pieces(pieces: list[Piece]) -> tuple[list[bytes], bytes | None]:
    """Messages made of whole pieces, and the start of one still open (None if there is none).

    Asserts the flags are consistent: `first` only on a message's first piece, `last` only on
    its final one.
    """
    messages: list[bytes] = []
    open_message: list[bytes] | None = None
    for piece in pieces:
        assert piece.first == (open_message is None), piece
        if open_message is None:
            open_message = []
        open_message.append(piece.data)
        if piece.last:
            messages.append(b"".join(open_message))
            open_message = None
    return messages, None if open_message is None else b"".join(open_message)


def feed_all(decoder: Decoder, chunks: list[bytes], stream_over: int) -> list[Piece]:
    pieces: list[Piece] = []
    for chunk in chunks:
        pieces += decoder.feed_pieces(chunk, stream_over=stream_over)
    return pieces


def base64_reply(size: int) -> bytes:
    payload = base64.encodebytes(os.urandom(size))  # 76-column lines
    return b"OK 5 <quote.base64>\n" + payload + b"</quote.base64>\n"


# -- strategies ---------------------------------------------------------------------------------

NAMES = [b"quote", b"quote.base64", b"multiline.step", b"a", b"x-1_2"]
# `<` that opens no tag. Each ends in a space, so that the text drawn after it cannot complete it
# into a tag (`<` + `0>`); a `<` that could begin a tag until b"\n" comes is in LINE_ENDS.
STRAYS = [b"< ", b"<< ", b"<a b> ", b"<> ", b"x<y ", b"</ ", b"<" + b"n" * 256 + b"> "]
LINE_ENDS = [b"\n", b"<\n", b" <quo\n", b"</a\n"]
plain = st.text(alphabet="ab Z.0\t>=", max_size=10).map(str.encode)
# A base64-like run: long enough to cross larger stream_over values.
runs = st.integers(20, 400).map(lambda n: (b"QUJD" * 100)[:n])


@st.composite
def tagged(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Text with stray `<`, nested tags and (inside tags) newlines and long runs."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["plain", "stray", "newline", "run", "tag"]))
        if kind == "plain":
            parts.append(draw(plain))
        elif kind == "stray":
            parts.append(draw(st.sampled_from(STRAYS)))
        elif kind in ("newline", "run") and depth > 0:
            parts.append(draw(st.sampled_from(LINE_ENDS)) if kind == "newline" else draw(runs))
        elif kind == "tag" and depth < 3:
            name = draw(st.sampled_from(NAMES))
            parts.append(b"<%s>%s</%s>" % (name, draw(tagged(depth + 1)), name))
    return b"".join(parts)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Several messages, maybe an unfinished one, cut into chunks at random places."""
    messages = draw(st.lists(tagged(), max_size=5))
    data = b"".join(message + draw(st.sampled_from(LINE_ENDS)) for message in messages)
    data += draw(st.sampled_from([b"", b"OK 9 <quote>\nQUJD", b"OK 9 <quote>\n</quo"]))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


stream_overs = st.one_of(st.integers(1, 8), st.integers(1, 600))


# -- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(streams(), stream_overs)
def test_pieces_join_into_the_messages_feed_returns(
    stream: tuple[bytes, list[bytes]], stream_over: int
) -> None:
    data, chunks = stream
    whole = Decoder()
    expected = whole.feed(data)
    reference, decoder = Decoder(), Decoder()
    pieces: list[Piece] = []
    for chunk in chunks:
        reference.feed(chunk)
        pieces += decoder.feed_pieces(chunk, stream_over=stream_over)
        messages, open_message = join_pieces(pieces)
        # Truthful state: the same tags open, and what is held is what was not handed out.
        assert decoder.open_tags == reference.open_tags
        assert decoder.pending + len(open_message or b"") == reference.pending
        assert decoder.streaming == (open_message is not None)
        # Bounded memory: inside a tag, past stream_over, only a possibly-cut tag is held.
        if decoder.open_tags and decoder.pending >= stream_over:
            assert decoder.pending <= LONGEST_CUT_TAG
    messages, open_message = join_pieces(pieces)
    assert messages == expected
    assert decoder.pending + len(open_message or b"") == whole.pending


@PROPERTY
@given(
    streams(),
    stream_overs,
    st.integers(1, 40),
    st.integers(1, 300),
    st.integers(1, 3),
)
def test_limits_refuse_a_stream_at_the_same_byte_as_feed(
    stream: tuple[bytes, list[bytes]],
    stream_over: int,
    max_line: int,
    max_message: int,
    max_depth: int,
) -> None:
    _, chunks = stream
    limits = Limits(max_line=max_line, max_message=max_message, max_depth=max_depth)
    reference, decoder = Decoder(limits), Decoder(limits)
    expected: list[bytes] = []
    pieces: list[Piece] = []
    for chunk in chunks:
        try:
            expected += reference.feed(chunk)
        except FramingError as exc:
            with pytest.raises(FramingError) as refused:
                decoder.feed_pieces(chunk, stream_over=stream_over)
            assert str(refused.value) == str(exc)
            with pytest.raises(FramingError, match="already refused"):
                decoder.feed_pieces(b"OK 1\n", stream_over=stream_over)
            break
        pieces += decoder.feed_pieces(chunk, stream_over=stream_over)
    assert join_pieces(pieces)[0] == expected


# -- explicit cases -----------------------------------------------------------------------------


def test_complete_messages_come_whole() -> None:
    data = b"OK 1\nOK 2 <quote>\nabc\n</quote>\n\n"
    assert Decoder().feed_pieces(data, stream_over=1) == [
        Piece(b"OK 1", True, True),
        Piece(b"OK 2 <quote>\nabc\n</quote>", True, True),
        Piece(b"", True, True),
    ]


def test_a_long_tag_body_is_handed_out_as_it_arrives() -> None:
    decoder = Decoder()
    head = b"OK 5 <quote.base64>\n"
    assert decoder.feed_pieces(head + b"QUJD" * 10, stream_over=16) == [
        Piece(head + b"QUJD" * 10, True, False)
    ]
    assert (decoder.pending, decoder.streaming) == (0, True)
    assert decoder.feed_pieces(b"RUZH" * 5, stream_over=16) == [Piece(b"RUZH" * 5, False, False)]
    assert decoder.feed_pieces(b"\n</quote.base64>\nOK 6\n", stream_over=16) == [
        Piece(b"\n</quote.base64>", False, True),
        Piece(b"OK 6", True, True),
    ]
    assert (decoder.pending, decoder.streaming, decoder.open_tags) == (0, False, ())
    decoder.close()


def test_nothing_is_handed_out_below_stream_over() -> None:
    decoder = Decoder()
    assert decoder.feed_pieces(b"OK 5 <quote>\nabc", stream_over=100) == []
    assert decoder.pending == 16
    assert decoder.feed_pieces(b"\n</quote>\n", stream_over=100) == [
        Piece(b"OK 5 <quote>\nabc\n</quote>", True, True)
    ]


def test_a_long_line_outside_tags_is_never_streamed_and_max_line_still_holds() -> None:
    decoder = Decoder(Limits(max_line=100))
    assert decoder.feed_pieces(b"x" * 100, stream_over=1) == []
    assert decoder.pending == 100
    with pytest.raises(FramingError, match="max_line=100"):
        decoder.feed_pieces(b"y", stream_over=1)


def test_a_tag_cut_at_the_end_of_a_piece_stays_pending_and_is_recognised() -> None:
    decoder = Decoder()
    assert decoder.feed_pieces(b"OK 5 <quote.base64>\nQUJD\n</quo", stream_over=1) == [
        Piece(b"OK 5 <quote.base64>\nQUJD\n", True, False)
    ]
    assert decoder.pending == len(b"</quo")
    assert decoder.feed_pieces(b"te.base64>\n", stream_over=1) == [
        Piece(b"</quote.base64>", False, True)
    ]
    assert decoder.open_tags == ()


def test_a_cut_opening_tag_inside_a_streamed_message_is_recognised() -> None:
    decoder = Decoder()
    pieces = decoder.feed_pieces(b"OK 5 <quote>\nab<multi", stream_over=1)
    pieces += decoder.feed_pieces(b"line.step>\n", stream_over=1)
    assert decoder.open_tags == ("quote", "multiline.step")
    pieces += decoder.feed_pieces(b"</multiline.step></quote>\n", stream_over=1)
    assert join_pieces(pieces) == (
        [b"OK 5 <quote>\nab<multiline.step>\n</multiline.step></quote>"],
        None,
    )


def test_a_streamed_message_over_max_message_is_refused() -> None:
    limits = Limits(max_message=1000)
    decoder = Decoder(limits)
    head = b"OK 5 <quote.base64>\n"
    assert decoder.feed_pieces(head + b"A" * 600, stream_over=100) == [
        Piece(head + b"A" * 600, True, False)
    ]
    assert decoder.pending == 0  # the decoder no longer holds any of it
    with pytest.raises(FramingError, match="max_message=1000") as refused:
        decoder.feed_pieces(b"A" * 500, stream_over=100)
    with pytest.raises(FramingError) as by_feed:
        Decoder(limits).feed(head + b"A" * 1100)
    assert str(refused.value) == str(by_feed.value)  # the same words, the same size
    with pytest.raises(FramingError, match="already refused"):
        decoder.feed_pieces(b"</quote.base64>\n", stream_over=100)


def test_max_depth_still_holds_while_streaming() -> None:
    decoder = Decoder(Limits(max_depth=2))
    decoder.feed_pieces(b"OK 5 <a><b>\n" + b"x" * 50, stream_over=10)
    with pytest.raises(FramingError, match="max_depth=2"):
        decoder.feed_pieces(b"<c>", stream_over=10)


def test_close_inside_a_streamed_message_says_the_stream_ended_inside_it() -> None:
    decoder = Decoder()
    decoder.feed_pieces(b"OK 5 <quote>\n" + b"A" * 100, stream_over=10)
    assert decoder.pending == 0
    with pytest.raises(FramingError, match=r"stream ended inside a message.*<quote>"):
        decoder.close()


def test_feed_refuses_to_run_while_a_message_is_half_handed_out() -> None:
    decoder = Decoder()
    decoder.feed_pieces(b"OK 5 <quote>\n" + b"A" * 100, stream_over=10)
    with pytest.raises(RuntimeError, match="feed_pieces"):
        decoder.feed(b"</quote>\n")
    decoder.feed_pieces(b"</quote>\n", stream_over=10)
    assert decoder.feed(b"OK 6\n") == [b"OK 6"]  # once the message is complete, either will do


@pytest.mark.parametrize("stream_over", [0, -1])
def test_stream_over_below_one_is_refused(stream_over: int) -> None:
    with pytest.raises(ValueError, match="stream_over"):
        Decoder().feed_pieces(b"OK 1\n", stream_over=stream_over)


def test_stream_over_that_is_not_an_int_is_refused() -> None:
    with pytest.raises(TypeError, match="stream_over"):
        Decoder().feed_pieces(b"OK 1\n", stream_over=1.5)  # type: ignore[arg-type]


def test_a_big_base64_reply_is_relayed_holding_only_one_read() -> None:
    reply = base64_reply(1024 * 1024)
    read = 64 * 1024
    decoder = Decoder()
    pieces: list[Piece] = []
    for i in range(0, len(reply), read):
        pieces += decoder.feed_pieces(reply[i : i + read], stream_over=16 * 1024)
        assert decoder.pending <= LONGEST_CUT_TAG
    assert len(pieces) == -(-len(reply) // read)
    assert join_pieces(pieces) == ([reply[:-1]], None)
