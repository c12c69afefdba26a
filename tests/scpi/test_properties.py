"""Property tests: round trips, split independence, and arbitrary bytes raising only our errors."""

import contextlib
import os
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labgate.scpi import names
from labgate.scpi.access import INSTRUMENT, LABGATE, AccessLevel, Allowed, Denied, check
from labgate.scpi.errors import FramingError, MessageError, ParseError, ScpiError
from labgate.scpi.framing import Decoder, Limits
from labgate.scpi.messages import (
    AnyMessage,
    Body,
    Command,
    Error,
    Message,
    Next,
    Ok,
    Ready,
    Warning,
    parse_command,
    parse_reply,
    serialise,
)
from labgate.scpi.values import quote, unquote

# SCPI_EXAMPLES=3000 for a longer hunt; the default keeps the suite fast.
PROPERTY = settings(
    max_examples=int(os.environ.get("SCPI_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Text without newlines, angle brackets or surrogates: safe anywhere on a line.
line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n<>"), max_size=30
)
tag_names = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
idents = st.integers(min_value=0, max_value=10**12)
option_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,10}", fullmatch=True)
tokens = line_text.map(quote)


@st.composite
def tagged_text(draw: st.DrawFn) -> str:
    """Reply text: plain pieces, stray `<`, and tag blocks with newlines (nested one level)."""
    pieces = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["plain", "lt", "block", "nested"]))
        if kind == "plain":
            pieces.append(draw(line_text))
        elif kind == "lt":
            pieces.append(" < 37.5 ")
        else:
            outer, inner = draw(tag_names), draw(tag_names)
            body = draw(line_text) + "\n" + draw(line_text) + "\n"
            if kind == "nested":
                body = f"<{inner}>\n{body}</{inner}>\n"
            pieces.append(f"<{outer}>\n{body}</{outer}>")
    return "".join(pieces)


@st.composite
def commands(draw: st.DrawFn) -> Command:
    name = draw(
        st.sampled_from(sorted(names.KNOWN))
        | st.from_regex(r"[A-Za-z][A-Za-z:?]{0,8}", fullmatch=True)
    )
    options = tuple(draw(st.lists(st.tuples(option_keys, tokens), max_size=3)))
    args = tuple(draw(st.lists(tokens, max_size=4)))
    body = None
    if draw(st.booleans()):
        content = draw(tagged_text())
        body = Body(tag=draw(tag_names), content="\n" + content + "\n")
    return Command(ident=draw(idents), name=name, options=options, args=args, body=body)


@st.composite
def replies(draw: st.DrawFn) -> AnyMessage:
    kind = draw(st.sampled_from(["ready", "ok", "next", "error", "warning", "message"]))
    if kind == "ready":
        return Ready(options=tuple(draw(st.lists(st.tuples(option_keys, tokens), max_size=4))))
    if kind == "ok":
        return Ok(ident=draw(idents), text=draw(tagged_text()))
    if kind == "next":
        return Next(ident=draw(idents))
    if kind == "warning":
        return Warning(ident=draw(idents), text=draw(line_text))
    if kind == "error":
        return Error(
            ident=draw(idents),
            error_class=draw(st.none() | st.from_regex(r"[A-Za-z]{0,12}", fullmatch=True)),
            fields=tuple(draw(st.lists(st.tuples(option_keys, tokens), max_size=3))),
            message=draw(line_text),
        )
    timestamp = draw(st.none() | st.floats(min_value=1.0, max_value=4e9))
    try:
        return Message(topic=draw(tag_names), timestamp=timestamp, text=draw(line_text))
    except MessageError:
        assume(False)
        raise


def parse_any(raw: bytes, msg: AnyMessage) -> AnyMessage:
    return parse_command(raw) if isinstance(msg, Command) else parse_reply(raw)


@PROPERTY
@given(commands() | replies())
def test_parse_of_serialise_is_the_message(msg: AnyMessage) -> None:
    data = serialise(msg)
    assert data.endswith(b"\n")
    assert parse_any(data[:-1], msg) == msg
    assert serialise(parse_any(data[:-1], msg)) == data


@PROPERTY
@given(line_text)
def test_unquote_of_quote_is_the_value(value: str) -> None:
    assert unquote(quote(value)) == value


@PROPERTY
@given(st.lists(commands() | replies(), min_size=1, max_size=6), st.data())
def test_any_split_of_a_valid_stream_decodes_to_the_same_messages(
    msgs: list[AnyMessage], data: st.DataObject
) -> None:
    raws = [serialise(m) for m in msgs]
    stream = b"".join(raws)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = Decoder()
    out: list[bytes] = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += decoder.feed(stream[start:stop])
    decoder.close()
    assert out == [raw[:-1] for raw in raws]
    assert [parse_any(raw, m) for raw, m in zip(out, msgs, strict=True)] == msgs


@PROPERTY
@given(st.lists(commands() | replies(), min_size=1, max_size=3))
def test_one_byte_at_a_time_decodes_to_the_same_messages(msgs: list[AnyMessage]) -> None:
    stream = b"".join(serialise(m) for m in msgs)
    decoder = Decoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == Decoder().feed(stream)


# Bytes biased towards the grammar's own characters, so the tag and substitution paths are hit.
protocolish = st.lists(
    st.sampled_from(
        [
            b"<a>",
            b"</a>",
            b"<b.c>",
            b"</b.c>",
            b"\n",
            b"<",
            b">",
            b"/",
            b" ",
            b"$(",
            b"$[",
            b"${",
            b")",
            b"]",
            b"}",
            b'"',
            b"\\",
            b"-k=",
            b"OK ",
            b"ERRor ",
            b"7 ",
            b"RET ",
            b"\xff",
            b"\x16",
        ]
    )
    | st.binary(max_size=8),
    max_size=40,
).map(b"".join)


@PROPERTY
@given(protocolish | st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=10))
def test_arbitrary_bytes_raise_only_framing_or_parse_errors(data: bytes, sizes: list[int]) -> None:
    limits = Limits(max_line=64, max_message=256, max_depth=3)
    decoder = Decoder(limits)
    pos = 0
    try:
        for size in [*sizes, len(data)]:
            for raw in decoder.feed(data[pos : pos + size]):
                with contextlib.suppress(ParseError):
                    parse_reply(raw)
                try:
                    command = parse_command(raw)
                except ParseError:
                    continue
                for table in (INSTRUMENT, LABGATE):
                    decision = check(command, AccessLevel.CONTROLLER, table)
                    assert isinstance(decision, Allowed | Denied)
            pos += size
            # memory: what is held never passes the limits
            assert decoder.pending <= max(limits.max_line, limits.max_message)
    except FramingError:
        assert decoder.pending == 0  # a refused stream drops what it held
        return
    try:
        decoder.close()
    except FramingError:
        assert decoder.pending > 0  # only an unfinished message makes the end an error


def reference_parse(text: str) -> Command:
    """The general tokenizer with no shortcut for a closing body: what parse_command must equal."""
    from labgate.scpi import values

    ident, name, *rest = values.split(text)
    body = None
    opening = re.match(r"<[A-Za-z0-9_.-]+>", rest[-1]) if rest else None
    if opening and values.tag_block_end(rest[-1], 0) == len(rest[-1]):
        last = rest.pop()
        tag = last[1 : last.index(">")]
        body = Body(tag=tag, content=last[len(tag) + 2 : len(last) - len(tag) - 3])
    options, args = values.split_options(rest)
    return Command(ident=int(ident), name=name, options=options, args=args, body=body)


command_text = st.lists(
    st.sampled_from(
        ["<q>", "</q>", "<r>", "</r>", " ", '"', "$(", ")", "x", "-k=", "\n", "<", "\\\\"]
    ),
    max_size=16,
).map(lambda parts: "7 RUN " + "".join(parts))


@PROPERTY
@given(command_text)
def test_parse_command_equals_the_general_tokenizer(text: str) -> None:
    try:
        expected: Command | type[ScpiError] = reference_parse(text)
    except (ScpiError, ValueError) as exc:
        expected = type(exc) if isinstance(exc, ScpiError) else ParseError
    try:
        got: Command | type[ScpiError] = parse_command(text.encode())
    except ParseError:
        got = ParseError
    if isinstance(expected, Command) or isinstance(got, Command):
        assert got == expected


def reference_frames(data: bytes) -> tuple[list[bytes], bool]:
    """A byte-at-a-time model of the framing rules: (messages, whether a closing tag mismatched).

    Slow and plain on purpose: the decoder's C-level shortcuts must give exactly this."""
    tag = re.compile(rb"<(/?)([A-Za-z0-9_.-]{1,255})>")
    messages: list[bytes] = []
    stack: list[bytes] = []
    start = i = 0
    while i < len(data):
        if data[i : i + 1] == b"<" and (match := tag.match(data, i)) is not None:
            closing, name = match.groups()
            if closing:
                if not stack or stack[-1] != name:
                    return messages, True
                stack.pop()
            else:
                stack.append(name)
            i = match.end()
            continue
        if data[i : i + 1] == b"\n" and not stack:
            messages.append(data[start:i])
            start = i + 1
        i += 1
    return messages, False


@PROPERTY
@given(protocolish, st.lists(st.integers(1, 40), max_size=12))
def test_decoder_matches_the_byte_at_a_time_model(data: bytes, sizes: list[int]) -> None:
    expected, mismatched = reference_frames(data)
    decoder = Decoder(Limits(max_depth=1000))  # limits out of the way: the grammar alone
    got: list[bytes] = []
    pos = 0
    try:
        for size in [*sizes, len(data)]:
            got += decoder.feed(data[pos : pos + size])
            pos += size
    except FramingError:
        assert mismatched
        assert got == expected[: len(got)]
        return
    assert not mismatched
    assert got == expected


@st.composite
def big_bodies(draw: st.DrawFn) -> bytes:
    """Messages with tag bodies of several KiB (so pieces of MIN_CHUNK and more fall inside
    them), the body text sometimes holding a stray `<`, a newline or a nested tag."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 3))):
        filler = draw(st.sampled_from([b"QUJD", b"ZGVm\n", b"a < b ", b"<i>x</i>", b"\n\n"]))
        repeat = draw(st.integers(200, 3000))
        tag = draw(tag_names).encode()
        body = filler * repeat
        if b"<" in filler and draw(st.booleans()):
            body = b"QUJD" * repeat + filler  # the only `<` of the body comes at its end
        parts.append(b"OK 1 <%s>\n%s</%s>\nNEXT 2\n" % (tag, body, tag))
    return b"".join(parts)


@PROPERTY
@given(big_bodies(), st.lists(st.integers(1, 5000), max_size=40))
def test_big_bodies_in_any_pieces_match_the_byte_at_a_time_model(
    data: bytes, sizes: list[int]
) -> None:
    expected, mismatched = reference_frames(data)
    assert not mismatched
    decoder = Decoder()
    got: list[bytes] = []
    pos = 0
    for size in [*sizes, len(data)]:
        got += decoder.feed(data[pos : pos + size])
        pos += size
    decoder.close()
    assert got == expected
    assert all(type(message) is bytes for message in got)


@PROPERTY
@given(st.integers(2000, 20000), st.lists(st.integers(1, 4096), min_size=1, max_size=30))
def test_a_big_body_never_holds_more_than_max_message_and_a_piece(
    limit: int, sizes: list[int]
) -> None:
    decoder = Decoder(Limits(max_message=limit))
    data = b"OK 1 <quote.base64>\n" + b"QUJD" * limit  # never ends within the limit
    pos = 0
    with pytest.raises(FramingError, match="max_message"):
        for size in [*sizes * 100, len(data)]:
            piece = data[pos : pos + size]
            pos += size
            decoder.feed(piece)
            assert decoder.pending <= limit
    assert decoder.pending == 0
