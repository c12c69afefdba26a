"""The protocol state of one relayed connection: idents handed out, replies mapped back to the
client's idents, the holder's own replies kept, strays named; and the fast head parse says what
`parse_reply` says, so both ways a reply is read end alike."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from labgate.scpi.exchange import Exchange, Pending, canonical_final
from labgate.scpi.messages import Ok, Warning, parse_reply, serialise


def _exchange(first: int = 5) -> tuple[Exchange, int, int]:
    exchange = Exchange(first)
    own = exchange.take(Pending(client_ident=None, command="ACCESS", sent_at=1.0))
    theirs = exchange.take(Pending(client_ident=41, command="POW?", sent_at=2.0))
    return exchange, own, theirs


def test_idents_go_on_from_where_the_login_stopped() -> None:
    exchange, own, theirs = _exchange(5)
    assert (own, theirs, exchange.next_ident) == (5, 6, 7)
    assert set(exchange.pending) == {5, 6}


def test_a_reply_is_mapped_back_to_the_clients_ident_and_ends_its_command() -> None:
    exchange, _, theirs = _exchange()
    assert exchange.receive(b"NEXT %d" % theirs).to_client == b"NEXT 41\n"
    reply = exchange.receive(b"OK %d ON" % theirs)
    assert reply.to_client == b"OK 41 ON\n"
    assert (reply.command, reply.status, reply.sent_at, reply.ok) == ("POW?", "OK", 2.0, True)
    assert reply.ended is not None and reply.ended.client_ident == 41
    assert theirs not in exchange.pending
    # Once answered, the same ident is nobody's.
    assert exchange.receive(b"OK %d ON" % theirs).stray


def test_the_holders_own_replies_are_not_relayed_but_end_its_command() -> None:
    exchange, own, _ = _exchange()
    assert exchange.receive(b"NEXT %d" % own).parts == ()
    reply = exchange.receive(b"ERRor %d [AccessLevelExceeded] --> no" % own)
    assert reply.parts == () and reply.status is None and not reply.ok
    assert reply.ended is not None and reply.ended.command == "ACCESS"


def test_strays_are_named_and_only_messages_pass() -> None:
    exchange, _, _ = _exchange()
    line = b"MESSage Temperature 1739920066.918 -sample=36.4"
    message = exchange.receive(line)
    assert message.to_client == line + b"\n" and "MESSage" in message.stray
    for raw in (b"OK 999", b"READy -session=1", b"\xff junk", b"ERRor 77 x"):
        reply = exchange.receive(raw)
        assert reply.parts == () and reply.stray, raw


def test_a_long_reply_starts_on_the_fast_path_only_for_a_clients_command() -> None:
    exchange, own, theirs = _exchange()
    assert exchange.start_long(b"OK %d <quote>" % own) is None
    start = exchange.start_long(b"OK %d <quote>abc" % theirs)
    assert start is not None and start.parts[0] == b"OK 41" and start.parts[-1] == b""
    assert bytes(start.parts[1]) == b" <quote>abc"


BODY = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="<>"))


@settings(max_examples=300, deadline=None)
@given(word=st.sampled_from(["OK", "WARNing"]), body=BODY, ident=st.integers(0, 10**6))
def test_the_fast_path_says_what_parse_reply_says(word: str, body: str, ident: int) -> None:
    raw = f"{word} {ident} {body}".rstrip(" ").encode()
    quick = canonical_final(raw)
    assert quick is not None
    parsed = parse_reply(raw)
    assert isinstance(parsed, Ok | Warning) and parsed.ident == ident == quick[1]
    exchange = Exchange(ident)
    exchange.take(Pending(client_ident=3, command="RET", sent_at=0.0))
    fast = exchange.receive(raw)
    kind = Ok if word == "OK" else Warning
    # The client gets the reply the parsed path would write, byte for byte, ident rewritten.
    assert fast.to_client == serialise(kind(ident=3, text=parsed.text))
    assert fast.status == ("OK" if word == "OK" else "WARNing") and fast.ok == (word == "OK")
