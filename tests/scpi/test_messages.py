import pytest

from labgate.scpi.errors import MessageError, ParseError
from labgate.scpi.framing import Decoder
from labgate.scpi.messages import (
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

MACHINE_STATUS = (
    b'5 RET $(DRAWER?) $[ "$(ENG?)" or "unknown" ] $(LST?) $(TBC:SampleTemperatures?) '
    b"$(TBC:BlockTemperatures?) $(TBC:CoverTemperatures?) $(TBC:SETT?) $(TBC:CONT?) "
    b"$(LED:LEDTemperature?)"
)


def test_every_captured_client_line_parses_and_writes_back_byte_for_byte(
    client_lines: list[bytes],
) -> None:
    for line in client_lines:
        command = parse_command(line[:-1])
        assert serialise(command) == line


def test_every_captured_reply_parses_and_writes_back_byte_for_byte(
    server_lines: list[bytes],
) -> None:
    for line in server_lines:
        assert serialise(parse_reply(line[:-1])) == line


def test_acc_command_splits_options_from_arguments() -> None:
    command = parse_command(b"2 ACC -stealth=false -exclusive=false Observer")
    assert command == Command(
        ident=2,
        name="ACC",
        options=(("stealth", "false"), ("exclusive", "false")),
        args=("Observer",),
    )
    assert command.canonical == "ACCESS"
    assert command.option("STEALTH") == "false"


def test_machine_status_substitutions_are_single_raw_tokens() -> None:
    command = parse_command(MACHINE_STATUS)
    assert command.name == "RET"
    assert command.args[:3] == ("$(DRAWER?)", '$[ "$(ENG?)" or "unknown" ]', "$(LST?)")
    assert len(command.args) == 9


def test_quoted_arguments_keep_their_quotes() -> None:
    command = parse_command(b'6 FOO -a="x y" "quoted arg" 7 1000 true')
    assert command.options == (("a", '"x y"'),)
    assert command.args == ('"quoted arg"', "7", "1000", "true")


def test_bare_dash_word_is_an_argument_not_an_option() -> None:
    command = parse_command(b"5 FILE:LIST? -verbose public_run_complete:*")
    assert command.options == ()
    assert command.args == ("-verbose", "public_run_complete:*")
    assert command.canonical == "FILE:LIST?"


def test_file_write_body_is_kept_exactly() -> None:
    raw = b"11 FILE:WRITE public_run_complete:new.txt <quote.base64>\naGVsbG8Kd29ybGQ=\n\n"
    raw += b"</quote.base64>"
    command = parse_command(raw)
    assert command.args == ("public_run_complete:new.txt",)
    assert command.body == Body(tag="quote.base64", content="\naGVsbG8Kd29ybGQ=\n\n")


def test_tag_block_in_the_middle_is_an_argument() -> None:
    command = parse_command(b'7 exp:run -asynchronous <block> zip "a.eds" "a" </block>')
    assert command.args == ("-asynchronous",)
    assert command.body == Body(tag="block", content=' zip "a.eds" "a" ')
    mid = parse_command(b"8 X <quote>a b</quote> tail")
    assert mid.args == ("<quote>a b</quote>", "tail")
    assert mid.body is None


def test_error_reply_with_class_and_fields() -> None:
    reply = parse_reply(
        b'ERRor 4 [InsufficientAccess] -requiredAccess="Full" -currentAccess="Observer" '
        b"--> SYST:EXEC requires Full access"
    )
    assert reply == Error(
        ident=4,
        error_class="InsufficientAccess",
        fields=(("requiredAccess", '"Full"'), ("currentAccess", '"Observer"')),
        message="SYST:EXEC requires Full access",
    )


def test_error_reply_without_arrow_keeps_the_rest_as_message() -> None:
    reply = parse_reply(b"ERRor 5 something went wrong")
    assert reply == Error(ident=5, error_class=None, fields=(), message="something went wrong")
    assert parse_reply(serialise(reply)[:-1]) == reply


def test_ok_reply_keeps_its_tagged_body_exactly() -> None:
    raw = b"OK 5 <quote.reply>\npublic_run_complete:run_one.eds\n</quote.reply>"
    assert parse_reply(raw) == Ok(
        ident=5, text="<quote.reply>\npublic_run_complete:run_one.eds\n</quote.reply>"
    )


def test_message_with_and_without_timestamp() -> None:
    temp = parse_reply(b"MESSage Temperature 1739920066.918 -sample=36.4,36.5 -cover=104.7")
    assert temp == Message(
        topic="Temperature", timestamp=1739920066.918, text="-sample=36.4,36.5 -cover=104.7"
    )
    assert parse_reply(b"MESSage Run Stage 2") == Message(
        topic="Run", timestamp=None, text="Stage 2"
    )


def test_ready_greeting_parses_its_options() -> None:
    ready = parse_reply(
        b"READy -session=474800 -product=QuantStudio3_5 -version=1.3.0 -build=001 "
        b"-capabilities=Index"
    )
    assert isinstance(ready, Ready)
    assert dict(ready.options)["product"] == "QuantStudio3_5"


def test_ready_with_a_bare_word_is_refused_as_qslib_does() -> None:
    with pytest.raises(ParseError, match="expected only -key=value options"):
        parse_reply(b"READy -session=1 hello")


def test_next_and_warning() -> None:
    assert parse_reply(b"NEXT 9") == Next(ident=9)
    assert parse_reply(b"WARNing 3 low disk") == Warning(ident=3, text="low disk")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "needs an ident and a name"),
        (b"5", "needs an ident and a name"),
        (b"x ACC?", "ident 'x' is not a decimal"),
        (b'5 FOO "unclosed', "unclosed double quote"),
        (b"5 RET $(DRAWER?", "never closed"),
        (b"5 -k=v ACC", "looks like an option"),
        (b"\x16\x03\x01\x00\xdd\x01", "not UTF-8"),
    ],
)
def test_malformed_commands_raise_parse_error_naming_the_problem(raw: bytes, problem: str) -> None:
    with pytest.raises(ParseError, match=problem):
        parse_command(raw)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"HELLO 1", "expected one of READy, OK"),
        (b"OK", "ident '' is not a decimal"),
        (b"OK x", "ident 'x'"),
        (b"NEXT 1 2", "expected only an ident"),
        (b"ERRor \x16\x03 [InsufficientAccess] --> junk", "not UTF-8|not a decimal"),
        (b"MESSage", "expected a topic word"),
    ],
)
def test_malformed_replies_raise_parse_error_naming_the_problem(raw: bytes, problem: str) -> None:
    with pytest.raises(ParseError, match=problem):
        parse_reply(raw)


def test_tls_client_hello_raises_parse_error_not_a_crash(tls_junk: list[bytes]) -> None:
    for hello in tls_junk:
        for raw in Decoder().feed(hello):
            with pytest.raises(ParseError):
                parse_command(raw)
            with pytest.raises(ParseError):
                parse_reply(raw)


def test_reply_keywords_are_case_insensitive() -> None:
    assert parse_reply(b"error 1 --> x") == Error(ident=1, error_class=None, message="x")
    assert parse_reply(b"ok 1") == Ok(ident=1)


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: Command(ident=-1, name="X"), "ident -1"),
        (lambda: Command(ident=1, name="A B"), "not one token"),
        (lambda: Command(ident=1, name="X", args=("a b",)), "not one token"),
        (lambda: Command(ident=1, name="X", args=("",)), "empty"),
        (lambda: Command(ident=1, name="X", args=("-k=v",)), "read back as an option"),
        (lambda: Command(ident=1, name="X", options=(("bad key", "v"),)), "option name"),
        (lambda: Body(tag="a b", content=""), "not a tag name"),
        (lambda: Message(topic="T", timestamp=None, text="12.5 rest"), "timestamp"),
        (lambda: Message(topic="T", timestamp=-1.0), "unix time"),
        (lambda: Error(ident=1, error_class="a]b"), "error class"),
    ],
)
def test_messages_that_cannot_be_written_are_refused_when_built(build, problem: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MessageError, match=problem):
        build()


def test_serialise_refuses_text_that_would_frame_as_two_messages() -> None:
    with pytest.raises(MessageError, match="2 messages"):
        serialise(Ok(ident=1, text="a\n0 SYST:EXEC reboot"))
    with pytest.raises(MessageError, match="frame"):
        serialise(Ok(ident=1, text="<quote>never closed"))
    with pytest.raises(MessageError, match="frame"):
        serialise(Command(ident=1, name="X", body=Body(tag="quote", content="</other>")))


def test_serialise_refuses_unencodable_text() -> None:
    with pytest.raises(MessageError, match="not UTF-8"):
        serialise(Ok(ident=1, text="\udcff"))


def test_tag_block_argument_before_a_body_round_trips() -> None:
    command = Command(
        ident=3, name="X", args=("<quote>a b</quote>",), body=Body(tag="quote", content="\nc\n")
    )
    data = serialise(command)
    assert data == b"3 X <quote>a b</quote> <quote>\nc\n</quote>\n"
    assert parse_command(data[:-1]) == command


def test_large_body_takes_the_shortcut_with_the_same_result() -> None:
    content = "\n" + "QUJD" * 50_000 + "\n"
    raw = f'12 FILE:WRITE "a b.txt" <quote.base64>{content}</quote.base64>'.encode()
    command = parse_command(raw)
    assert command.args == ('"a b.txt"',)
    assert command.body == Body(tag="quote.base64", content=content)
    assert serialise(command) == raw + b"\n"


def test_a_lone_angle_bracket_argument_is_text_not_a_body() -> None:
    command = parse_command(b"5 X a <")
    assert command.args == ("a", "<")
    assert command.body is None


def test_option_value_in_quote_tags_spans_lines_as_one_token() -> None:
    raw = b"9 STAGE -label=<quote>two\nlines</quote> 2 NAME"
    assert Decoder().feed(raw + b"\n") == [raw]
    command = parse_command(raw)
    assert command.options == (("label", "<quote>two\nlines</quote>"),)
    assert command.args == ("2", "NAME")
    assert serialise(command) == raw + b"\n"
