import pytest

from labgate.scpi.errors import FramingError
from labgate.scpi.framing import DEFAULT_MAX_MESSAGE, MAX_TAG_NAME, Decoder, Limits


def feed_bytewise(decoder: Decoder, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    return out


def test_captured_client_stream_frames_into_its_lines(
    client_lines: list[bytes], client_stream: bytes
) -> None:
    assert Decoder().feed(client_stream) == [line[:-1] for line in client_lines]


def test_captured_client_stream_one_byte_at_a_time(
    client_lines: list[bytes], client_stream: bytes
) -> None:
    decoder = Decoder()
    assert feed_bytewise(decoder, client_stream) == [line[:-1] for line in client_lines]
    decoder.close()


def test_captured_replies_frame_into_their_lines(
    server_lines: list[bytes], server_stream: bytes
) -> None:
    decoder = Decoder()
    assert feed_bytewise(decoder, server_stream) == [line[:-1] for line in server_lines]


def test_newline_inside_a_tag_does_not_end_the_message() -> None:
    data = (
        b"11 FILE:WRITE public_run_complete:new.txt <quote.base64>\naGVsbG8=\n\n</quote.base64>\n"
    )
    assert Decoder().feed(data) == [data[:-1]]


def test_nested_protocol_tags_stay_one_message() -> None:
    data = (
        b"5 PROTOCOL demo <multiline.protocol>\n\tSTAGE 1 <multiline.stage>\n"
        b"\t\tSTEP 1 <multiline.step>\n\t\t\tHOLD 30\n\t\t</multiline.step>\n"
        b"\t</multiline.stage>\n</multiline.protocol>\nOK 6\n"
    )
    assert Decoder().feed(data) == [data[: data.index(b"\nOK")], b"OK 6"]


@pytest.mark.parametrize(
    "line",
    [
        b"MESSage Temperature < 37.5",
        b"x <a b> y",
        b"x <> y",
        b"a<",
        b"if a<b or c>d",
        b"<a b> <c d>",
    ],
)
def test_angle_bracket_that_opens_no_tag_is_text(line: bytes) -> None:
    decoder = Decoder()
    assert decoder.feed(line + b"\nNEXT 1\n") == [line, b"NEXT 1"]
    assert decoder.open_tags == ()


def test_tag_split_across_feeds_is_recognised() -> None:
    decoder = Decoder()
    assert decoder.feed(b"OK 1 <quo") == []
    assert decoder.feed(b"te>\nline\n</qu") == []
    assert decoder.open_tags == ("quote",)
    assert decoder.feed(b"ote>\n") == [b"OK 1 <quote>\nline\n</quote>"]


def test_tag_name_longer_than_the_bound_is_text() -> None:
    name = b"a" * (MAX_TAG_NAME + 1)
    assert Decoder().feed(b"x <" + name + b">\n") == [b"x <" + name + b">"]


def test_mismatched_closing_tag_is_refused() -> None:
    with pytest.raises(FramingError, match=r"</quote\.reply>.*expected </quote>"):
        Decoder().feed(b"OK 1 <quote>\nx\n</quote.reply>\n")


def test_closing_tag_with_nothing_open_is_refused() -> None:
    with pytest.raises(FramingError, match="</quote>"):
        Decoder().feed(b"OK 1 </quote>\n")


def test_line_longer_than_max_line_is_refused_before_its_end_arrives() -> None:
    decoder = Decoder(Limits(max_line=100))
    decoder.feed(b"x" * 100)
    with pytest.raises(FramingError, match="max_line=100"):
        decoder.feed(b"y")
    assert decoder.pending == 0  # the buffer was dropped, not kept growing


def test_line_limit_counts_bytes_before_a_tag() -> None:
    with pytest.raises(FramingError, match="max_line=10"):
        Decoder(Limits(max_line=10)).feed(b"0123456789ABC <quote>")


def test_text_inside_tags_is_bounded_by_max_message_not_max_line() -> None:
    decoder = Decoder(Limits(max_line=16, max_message=1000))
    body = b"OK 1 <quote>\n" + b"A" * 500 + b"\n</quote>\n"
    assert decoder.feed(body) == [body[:-1]]
    with pytest.raises(FramingError, match="max_message=1000"):
        decoder.feed(b"OK 2 <quote>\n" + b"A" * 1000)


def test_tags_nested_deeper_than_max_depth_are_refused() -> None:
    decoder = Decoder(Limits(max_depth=3))
    assert decoder.feed(b"x <a><b><c></c></b></a>\n") == [b"x <a><b><c></c></b></a>"]
    with pytest.raises(FramingError, match="max_depth=3"):
        decoder.feed(b"x <a><b><c><d>")


def test_decoder_refuses_everything_after_a_framing_error() -> None:
    decoder = Decoder()
    with pytest.raises(FramingError):
        decoder.feed(b"</x>\n")
    with pytest.raises(FramingError, match="already refused"):
        decoder.feed(b"OK 1\n")


def test_close_mid_message_names_the_open_tags() -> None:
    decoder = Decoder()
    decoder.feed(b"OK 1 <quote>\nabc")
    with pytest.raises(FramingError, match=r"stream ended inside a message.*<quote>"):
        decoder.close()


def test_close_after_complete_messages_is_quiet() -> None:
    decoder = Decoder()
    decoder.feed(b"OK 1\n")
    decoder.close()


def test_tls_client_hello_on_a_plain_port_is_framed_without_error(tls_junk: list[bytes]) -> None:
    for hello in tls_junk:
        decoder = Decoder()
        messages = decoder.feed(hello)
        # every byte is accounted for: cut into messages at b"\n" or pending for the next one
        assert sum(len(m) + 1 for m in messages) + decoder.pending == len(hello)
        assert b"\n".join(messages) == hello[: len(hello) - decoder.pending - 1]


def test_default_message_limit_holds_a_64_mib_file_as_base64() -> None:
    base64_size = (64 * 1024 * 1024 + 2) // 3 * 4
    with_line_breaks = base64_size + base64_size // 76
    assert with_line_breaks + 200 < DEFAULT_MAX_MESSAGE


def test_large_base64_block_fed_in_pieces_is_one_message() -> None:
    import base64

    payload = base64.encodebytes(bytes(range(256)) * 4096)  # 1 MiB of data
    data = b"OK 5 <quote>\n" + payload + b"</quote>\n"
    decoder = Decoder()
    out: list[bytes] = []
    for i in range(0, len(data), 65536):
        out += decoder.feed(data[i : i + 65536])
    assert out == [data[:-1]]


@pytest.mark.parametrize("field", ["max_line", "max_message", "max_depth"])
def test_limits_refuse_non_positive_values(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: 0})


def test_a_tag_after_a_run_of_stray_angle_brackets_is_found() -> None:
    decoder = Decoder()
    assert decoder.feed(b"x <<<<a>\n") == []  # `<a>` opened a tag: the b"\n" is inside it
    assert decoder.open_tags == ("a",)
    assert decoder.feed(b"<< </a>\n") == [b"x <<<<a>\n<< </a>"]


def test_stray_angle_brackets_before_a_newline_do_not_hide_it() -> None:
    assert Decoder().feed(b"a < b << c\nd <x\nOK 1\n") == [b"a < b << c", b"d <x", b"OK 1"]


def test_a_tag_cut_after_stray_angle_brackets_waits_for_the_rest() -> None:
    decoder = Decoder()
    assert decoder.feed(b"OK 1 <<<quo") == []
    assert decoder.feed(b"te>\n</quote>\n") == [b"OK 1 <<<quote>\n</quote>"]
