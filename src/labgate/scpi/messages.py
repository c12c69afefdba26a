"""The message model: what a client sends (`Command`) and what an instrument answers (replies).

Shapes, one message each (the framing has already cut the stream at the right b"\\n"):

    READy -session=474800 -product=QuantStudio3_5 ...  Ready(options)
    <ident> <NAME> [-opt=value ...] [args ...] [<tag>body</tag>]
                                                        Command(ident, name, options, args, body)
    OK <ident>[ <text>]                                 Ok(ident, text)
    NEXT <ident>                                        Next(ident)
    ERRor <ident> [<Class>] [-k="v" ...] --> <message>  Error(ident, error_class, fields, message)
    WARNing <ident> <text>                              Warning(ident, text)
    MESSage <Topic> [<unix-ts>] <text>                  Message(topic, timestamp, text)

Tokens are kept raw (quotes, `$(...)`, `$[...]` as written): a gateway checks what the instrument
will read, then forwards `serialise(command)`, the very text it checked. Options are the leading
`-key=value` tokens; a bare `-verbose` is an argument. `parse(serialise(m)) == m` for every
message. `serialise(parse(raw)) == raw` for every line qslib sent in the captures; in general it
may differ in runs of spaces, the case of a reply keyword, an `-->` added to an ERRor that had
none, or how a timestamp's digits are written.

Bytes that are not UTF-8 (a TLS ClientHello sent to a plain port) raise `ParseError`; so does any
message that does not fit its shape. Building a message that cannot be written raises
`MessageError` at once (events validate when built, as in h11).
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from labgate.scpi import names, values
from labgate.scpi.errors import FramingError, MessageError, ParseError
from labgate.scpi.framing import Decoder, Limits

Options = tuple[tuple[str, str], ...]

_IDENT = re.compile(r"[0-9]{1,18}")
_TAG_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")
_OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_ERROR_CLASS = re.compile(r"\[([^\]\s]*)\]")
_TIMESTAMP = re.compile(r"[0-9]+\.[0-9]+")
_TOPIC = re.compile(r"[^\s<>\"]+")
_OPEN_TAG = re.compile(r"<([A-Za-z0-9_.-]{1,255})>")


@dataclass(frozen=True, slots=True, kw_only=True)
class Body:
    """A `<tag>content</tag>` block ending a command; `content` is kept exactly."""

    tag: str
    content: str

    def __post_init__(self) -> None:
        if not _TAG_NAME.fullmatch(self.tag):
            raise MessageError(f"body tag {self.tag!r} is not a tag name ([A-Za-z0-9_.-]+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """The instrument's greeting: `READy` and only `-key=value` options."""

    options: Options

    def __post_init__(self) -> None:
        _check_options(self.options)


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A client's request. `name` is as written; `canonical` folds its spelling."""

    ident: int
    name: str
    options: Options = ()
    args: tuple[str, ...] = ()
    body: Body | None = None

    def __post_init__(self) -> None:
        _check_ident(self.ident)
        _check_token(self.name, "command name")
        if self.name.startswith("-") or self.name.startswith("<"):
            raise MessageError(f"command name {self.name!r} would read as an option or a tag")
        _check_options(self.options)
        for arg in self.args:
            _check_token(arg, "argument")
        if self.args and values.option(self.args[0]) is not None:
            raise MessageError(f"argument {self.args[0]!r} would read back as an option")
        if self.args and self.body is None and _is_tag_block(self.args[-1]):
            raise MessageError(f"last argument {self.args[-1][:40]!r} would read back as a body")

    @property
    def canonical(self) -> str:
        """The canonical command name (`ACC?` -> `ACCESS?`), see `labgate.scpi.names`."""
        return names.canonical(self.name)

    def option(self, key: str) -> str | None:
        """The raw value of option `-key=...` (key case-insensitive), or None."""
        folded = key.lower()
        for name, value in self.options:
            if name.lower() == folded:
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ok:
    """Final success; `text` is the reply body exactly as written (tags included)."""

    ident: int
    text: str = ""

    def __post_init__(self) -> None:
        _check_ident(self.ident)


@dataclass(frozen=True, slots=True, kw_only=True)
class Next:
    """Accepted and still running; the final `Ok` or `Error` follows."""

    ident: int

    def __post_init__(self) -> None:
        _check_ident(self.ident)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """Final failure: `[Class]`, `-key="value"` fields (raw values), then `--> message`."""

    ident: int
    error_class: str | None
    fields: Options = ()
    message: str = ""

    def __post_init__(self) -> None:
        _check_ident(self.ident)
        if self.error_class is not None and not _ERROR_CLASS.fullmatch(f"[{self.error_class}]"):
            raise MessageError(f"error class {self.error_class!r} may not hold spaces or ']'")
        _check_options(self.fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class Warning:  # the protocol's own word; shadows the builtin only inside this module
    """A warning that counts as success."""

    ident: int
    text: str = ""

    def __post_init__(self) -> None:
        _check_ident(self.ident)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """An asynchronous event (`MESSage Temperature 1739920066.918 -sample=...`)."""

    topic: str
    timestamp: float | None
    text: str = ""

    def __post_init__(self) -> None:
        if not _TOPIC.fullmatch(self.topic):
            raise MessageError(f"message topic {self.topic!r} must be one word")
        if self.timestamp is not None:
            if not math.isfinite(self.timestamp) or not _TIMESTAMP.fullmatch(repr(self.timestamp)):
                raise MessageError(
                    f"timestamp {self.timestamp!r} must be a non-negative float written as "
                    "digits.digits (a unix time)"
                )
        elif _TIMESTAMP.fullmatch(self.text.split(" ", 1)[0]):
            raise MessageError(
                f"message text {self.text[:40]!r} starts with a number that would read back as "
                "a timestamp"
            )


Reply = Ready | Ok | Next | Error | Warning | Message
AnyMessage = Command | Reply


def parse_command(raw: bytes) -> Command:
    """Parse one framed client message (without its b"\\n")."""
    text = _decode(raw)
    tokens, body = _tokens_and_body(text)
    if len(tokens) < 2:
        raise ParseError(f"command {_show(text)} needs an ident and a name: '<ident> <NAME> ...'")
    ident_token, name, *rest = tokens
    if not _IDENT.fullmatch(ident_token):
        raise ParseError(f"command ident {_show(ident_token)} is not a decimal number")
    if name.startswith("-") or name.startswith("<"):
        raise ParseError(f"command name {_show(name)} looks like an option or a tag")
    if body is None and rest and _is_tag_block(rest[-1]):
        body = _body(rest.pop())
    options, args = values.split_options(rest)
    return Command(ident=int(ident_token), name=name, options=options, args=args, body=body)


def _tokens_and_body(text: str) -> tuple[list[str], Body | None]:
    """Tokens, and the closing body when the first tag opens a block that ends the text.

    That is how every large command looks (`FILE:WRITE path <quote.base64>...`), and cutting the
    block off first spares copying and re-scanning megabytes of base64 as a token. The result is
    the one the general tokenizer gives: the shortcut is taken only when the text before the block
    is itself complete tokens, so no quote or `$(` from before the block runs into it.
    """
    first = _OPEN_TAG.search(text)
    if first is not None and first.start() > 0 and text[first.start() - 1] == " ":
        try:
            if values.tag_block_end(text, first.start()) == len(text):
                tokens = values.split(text[: first.start()])
                tag = first.group(1)
                return tokens, Body(tag=tag, content=text[first.end() : len(text) - len(tag) - 3])
        except ParseError:
            pass  # the general tokenizer below says what is wrong
    return values.split(text), None


def parse_reply(raw: bytes) -> Reply:
    """Parse one framed instrument message (without its b"\\n")."""
    keyword, rest_at = _word(raw, 0)
    kind = keyword.upper()
    if kind in ("OK", "WARNING"):
        # These carry the big bodies (FILE:READ? answers): decode the body once, from the
        # original bytes, instead of decoding the whole reply and then slicing copies of it.
        ident_token, text_at = _word(raw, rest_at)
        ident = _ident(ident_token, raw[:40].decode("utf-8", "replace"))
        text = _decode(raw, text_at)
        return Ok(ident=ident, text=text) if kind == "OK" else Warning(ident=ident, text=text)
    parser = _REPLY_PARSERS.get(kind)
    if parser is None:
        raise ParseError(
            f"reply {raw[:60]!r} starts with {keyword!r}; expected one of "
            "READy, OK, NEXT, ERRor, WARNing, MESSage"
        )
    return parser(_decode(raw, rest_at))


def serialise(msg: AnyMessage) -> bytes:
    """The exact bytes of `msg`, with its trailing b"\\n"."""
    try:
        if isinstance(msg, Command) and msg.body is not None:
            # encode the (possibly huge) body once, on its own, and join: two copies, not three
            tag = msg.body.tag
            head = f"{_command_head(msg)} <{tag}>".encode()
            data = b"".join((head, msg.body.content.encode(), f"</{tag}>\n".encode()))
        else:
            data = (_write(msg) + "\n").encode()
    except UnicodeEncodeError as exc:
        raise MessageError(f"{type(msg).__name__} holds text that is not UTF-8: {exc}") from exc
    _check_framed(data, msg)
    return data


# ---- parsing -------------------------------------------------------------------------------


def _decode(raw: bytes, start: int = 0) -> str:
    try:
        with memoryview(raw) as view:
            return str(view[start:], "utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        raise ParseError(
            f"message is not UTF-8 text (byte {at}: {raw[at : at + 1]!r}); it starts {raw[:16]!r}"
        ) from None


def _word(raw: bytes, start: int) -> tuple[str, int]:
    """The text from `start` to the next space, and where the text after that space begins."""
    end = raw.find(b" ", start)
    if end == -1:
        return _decode(raw[start:]), len(raw)
    return _decode(raw[start:end]), end + 1


def _ident(token: str, text: str) -> int:
    if not _IDENT.fullmatch(token):
        raise ParseError(f"reply ident {_show(token)} is not a decimal number (in {_show(text)})")
    return int(token)


def _parse_ready(rest: str) -> Ready:
    options, args = values.split_options(values.split(rest))
    if args:
        raise ParseError(f"READy carries {_show(args[0])}; expected only -key=value options")
    return Ready(options=options)


def _parse_next(rest: str) -> Next:
    if " " in rest:
        raise ParseError(f"NEXT {_show(rest)}: expected only an ident")
    return Next(ident=_ident(rest, rest))


def _parse_error(rest: str) -> Error:
    ident_token, _, tail = rest.partition(" ")
    ident = _ident(ident_token, rest)
    pos = len(tail) - len(tail.lstrip(" "))
    error_class = None
    match = _ERROR_CLASS.match(tail, pos)
    if match is not None:
        error_class = match.group(1)
        pos = match.end()
    fields: list[tuple[str, str]] = []
    while True:
        while pos < len(tail) and tail[pos] == " ":
            pos += 1
        if tail.startswith("-->", pos):
            message = tail[pos + 3 :]
            return Error(
                ident=ident,
                error_class=error_class,
                fields=tuple(fields),
                message=message[1:] if message.startswith(" ") else message,
            )
        stop = values.token_end(tail, pos)
        field = values.option(tail[pos:stop])
        if field is None:  # no `-->`: the rest is the message, as the instrument wrote it
            return Error(
                ident=ident, error_class=error_class, fields=tuple(fields), message=tail[pos:]
            )
        fields.append(field)
        pos = stop


def _parse_message(rest: str) -> Message:
    topic, _, text = rest.partition(" ")
    if not _TOPIC.fullmatch(topic):
        raise ParseError(f"MESSage {_show(rest)}: expected a topic word first")
    first, _, after = text.partition(" ")
    if _TIMESTAMP.fullmatch(first):
        return Message(topic=topic, timestamp=float(first), text=after)
    return Message(topic=topic, timestamp=None, text=text)


def _body(token: str) -> Body:
    tag = token[1 : token.index(">")]
    return Body(tag=tag, content=token[len(tag) + 2 : len(token) - len(tag) - 3])


def _is_tag_block(token: str) -> bool:
    """Whether the whole token is one `<tag>...</tag>` block (a lone `<` is text, not a block)."""
    return _OPEN_TAG.match(token) is not None and values.tag_block_end(token, 0) == len(token)


_REPLY_PARSERS: dict[str, Callable[[str], Reply]] = {
    "READY": _parse_ready,
    "NEXT": _parse_next,
    "ERROR": _parse_error,
    "MESSAGE": _parse_message,
}


# ---- writing -------------------------------------------------------------------------------


def _options_text(options: Options) -> list[str]:
    return [f"-{key}={value}" for key, value in options]


def _write(msg: AnyMessage) -> str:
    match msg:
        case Command():
            return _write_command(msg)
        case Ready():
            return " ".join(["READy", *_options_text(msg.options)])
        case Ok():
            return f"OK {msg.ident} {msg.text}" if msg.text else f"OK {msg.ident}"
        case Next():
            return f"NEXT {msg.ident}"
        case Error():
            return _write_error(msg)
        case Warning():
            return f"WARNing {msg.ident} {msg.text}" if msg.text else f"WARNing {msg.ident}"
        case Message():
            return _write_message(msg)
    raise TypeError(f"serialise() takes a Command or a reply, not {type(msg).__name__}")


def _command_head(msg: Command) -> str:
    return " ".join([str(msg.ident), msg.name, *_options_text(msg.options), *msg.args])


def _write_command(msg: Command) -> str:
    head = _command_head(msg)
    if msg.body is None:
        return head
    return f"{head} <{msg.body.tag}>{msg.body.content}</{msg.body.tag}>"


def _write_error(msg: Error) -> str:
    parts = ["ERRor", str(msg.ident)]
    if msg.error_class is not None:
        parts.append(f"[{msg.error_class}]")
    parts.extend(_options_text(msg.fields))
    parts.append("-->")
    head = " ".join(parts)
    return f"{head} {msg.message}" if msg.message else head


def _write_message(msg: Message) -> str:
    parts = ["MESSage", msg.topic]
    if msg.timestamp is not None:
        parts.append(repr(msg.timestamp))
    if msg.text:
        parts.append(msg.text)
    return " ".join(parts)


# ---- validation ----------------------------------------------------------------------------


def _check_ident(ident: int) -> None:
    if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident < 10**18:
        raise MessageError(f"ident {ident!r} must be an int from 0 to 10**18 - 1")


def _check_token(token: str, what: str) -> None:
    if not token:
        raise MessageError(f"{what} is empty; write '\"\"' for an empty value")
    try:
        whole = values.token_end(token, 0) == len(token)
    except ParseError as exc:
        raise MessageError(f"{what} {token[:40]!r} is not a complete token: {exc}") from None
    if not whole:
        raise MessageError(f"{what} {token[:40]!r} is not one token (quote it with values.quote)")


def _check_options(options: Options) -> None:
    for key, value in options:
        if not _OPTION_NAME.fullmatch(key):
            raise MessageError(f"option name {key!r} must match [A-Za-z_][A-Za-z0-9_.]*")
        if value:
            _check_token(value, f"value of option -{key}")


def _check_framed(data: bytes, msg: AnyMessage) -> None:
    """The written bytes must frame as exactly this one message, or the peer would misread."""
    decoder = Decoder(Limits(max_line=len(data) + 1, max_message=len(data) + 1))
    try:
        framed = decoder.feed(data)
    except FramingError as exc:
        raise MessageError(f"{type(msg).__name__} does not frame as one message: {exc}") from None
    if len(framed) != 1 or decoder.pending:
        raise MessageError(
            f"{type(msg).__name__} would frame as {len(framed)} messages: its text holds a b'\\n' "
            "outside tags, or a tag left open"
        )


def _show(text: str | list[str] | tuple[str, ...], width: int = 60) -> str:
    if not isinstance(text, str):
        text = " ".join(text)
    return repr(text[:width] + ("..." if len(text) > width else ""))
