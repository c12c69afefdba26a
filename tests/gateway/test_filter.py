"""The session filter on its own: what is answered, what is refused, what is forwarded, and how
idents are mapped. No sockets: bytes in, bytes out."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from labgate.gateway.filter import Decision, SessionFilter
from labgate.scpi.access import AccessLevel
from labgate.scpi.messages import Command, Error, Next, Ok, parse_command, parse_reply, serialise


def _filter(
    grant: AccessLevel = AccessLevel.CONTROLLER, level: AccessLevel = AccessLevel.GUEST
) -> SessionFilter:
    # The instrument already at the session level, as after the session's first command.
    return SessionFilter(grant=grant, next_ident=2, level=level, upstream_level=level)


def test_challenge_and_auth_are_answered_by_the_gateway() -> None:
    f = _filter()
    chal = f.from_client(b"0 CHAL?", now=0)
    assert chal.decision is Decision.ANSWERED and chal.to_upstream == b""
    reply = parse_reply(chal.to_client.rstrip(b"\n"))
    assert isinstance(reply, Ok) and reply.ident == 0
    assert any(c in "abcdef" for c in reply.text)  # never all digits: qslib would re-type it
    auth = f.from_client(b"1 AUTH 0123456789abcdef", now=0)
    assert auth.decision is Decision.ANSWERED and auth.to_upstream == b""
    assert parse_reply(auth.to_client.rstrip(b"\n")) == Ok(ident=1, text="")


def test_access_above_the_grant_is_refused_with_the_limit() -> None:
    f = _filter(AccessLevel.OBSERVER)
    verdict = f.from_client(b"4 ACC -stealth=false -exclusive=false Controller", now=0)
    assert verdict.decision is Decision.DENIED and verdict.to_upstream == b""
    error = parse_reply(verdict.to_client.rstrip(b"\n"))
    assert isinstance(error, Error) and error.ident == 4
    assert error.error_class == "AccessLevelExceeded"
    assert dict(error.fields)["accessLimit"] == '"Observer"'
    assert f.level is AccessLevel.GUEST


def test_access_within_the_grant_is_answered_and_the_instrument_follows_before_it_is_asked() -> (
    None
):
    f = _filter(AccessLevel.CONTROLLER)
    verdict = f.from_client(b"7 ACC -stealth=false -exclusive=false controller", now=0)
    assert verdict.decision is Decision.ANSWERED and verdict.to_upstream == b""
    assert verdict.to_client == b"OK 7\n"
    assert f.level is AccessLevel.CONTROLLER  # at once: the next command is judged at it
    # The instrument is brought to the level in the same write as the next command, ahead of it.
    sent = f.from_client(b"8 OPEN", now=0).to_upstream
    assert sent == b"2 ACC -stealth=false -exclusive=false Controller\n3 OPEN\n"
    assert f.from_upstream(b"OK 2").parts == ()  # the gateway's own: not relayed
    assert f.from_upstream(b"OK 3").to_client == b"OK 8\n"
    assert not f.broken
    # Once it is there, no more ACC goes with commands.
    assert f.from_client(b"9 POW?", now=0).to_upstream == b"4 POW?\n"


def test_an_instrument_that_refuses_the_level_ends_the_session() -> None:
    f = _filter(AccessLevel.CONTROLLER)
    f.from_client(b"7 ACC Controller", now=0)
    f.from_client(b"8 OPEN", now=0)
    f.from_upstream(b"ERRor 2 [AccessLevelExceeded] --> no")
    assert "refused to take the session's level Controller" in f.broken
    assert not f.reusable


def test_access_with_stealth_or_exclusive_is_forwarded_and_set_when_the_instrument_agrees() -> None:
    f = _filter(AccessLevel.CONTROLLER)
    verdict = f.from_client(b"7 ACC -stealth=false -exclusive=true controller", now=0)
    assert verdict.decision is Decision.ALLOWED
    sent = parse_command(verdict.to_upstream.rstrip(b"\n"))
    assert sent.ident == 2 and sent.canonical == parse_command(b"0 ACC x").canonical
    assert f.level is AccessLevel.GUEST  # not before the instrument said OK
    relayed = f.from_upstream(b"OK 2")
    assert parse_reply(relayed.to_client.rstrip(b"\n")) == Ok(ident=7, text="")
    assert f.level is AccessLevel.CONTROLLER
    assert f.from_client(b"9 POW?", now=0).to_upstream == b"3 POW?\n"  # it is there already


def test_access_query_reports_the_session_level() -> None:
    f = _filter(level=AccessLevel.OBSERVER)
    verdict = f.from_client(b"3 ACC?", now=0)
    assert verdict.to_upstream == b""
    reply = parse_reply(verdict.to_client.rstrip(b"\n"))
    assert isinstance(reply, Ok) and reply.text.endswith("Observer")


def test_command_above_the_session_level_never_reaches_the_instrument() -> None:
    f = _filter(AccessLevel.CONTROLLER, level=AccessLevel.OBSERVER)
    verdict = f.from_client(b"5 OPEN", now=0)
    assert verdict.decision is Decision.DENIED and verdict.to_upstream == b""
    error = parse_reply(verdict.to_client.rstrip(b"\n"))
    assert isinstance(error, Error) and error.error_class == "InsufficientAccess"
    assert dict(error.fields) == {"requiredAccess": '"Controller"', "currentAccess": '"Observer"'}


def test_nested_command_and_python_expression_are_judged() -> None:
    f = _filter(AccessLevel.CONTROLLER, level=AccessLevel.OBSERVER)
    assert f.from_client(b"1 RET $(OPEN)", now=0).to_upstream == b""
    f.level = AccessLevel.CONTROLLER
    python = f.from_client(b'2 RET $[ __import__("os").system("id") ]', now=0)
    assert python.decision is Decision.DENIED and python.to_upstream == b""
    assert f.from_client(b'3 SYST:EXEC "killall zygote"', now=0).to_upstream == b""


def test_replies_are_mapped_back_to_the_clients_idents() -> None:
    f = _filter(level=AccessLevel.CONTROLLER)
    verdict = f.from_client(b"41 OPEN", now=1.0)
    upstream_ident = parse_command(verdict.to_upstream.rstrip(b"\n")).ident
    assert upstream_ident == 2
    assert parse_reply(f.from_upstream(b"NEXT 2").to_client.rstrip(b"\n")) == Next(ident=41)
    final = f.from_upstream(b"OK 2")
    assert parse_reply(final.to_client.rstrip(b"\n")) == Ok(ident=41, text="")
    assert final.status == "OK" and final.sent_at == 1.0
    assert f.from_upstream(b"OK 2").to_client == b""  # already answered: dropped


def test_reply_to_an_ident_never_sent_is_dropped() -> None:
    assert _filter().from_upstream(b"OK 99 secret").to_client == b""


def test_messages_pass_through() -> None:
    line = b"MESSage Temperature 1739920066.918 -sample=36.4 -block=36.5 -cover=104.7"
    assert _filter().from_upstream(line).to_client == line + b"\n"


def test_lowered_grant_lowers_the_level_at_once_and_the_instrument_with_it() -> None:
    f = _filter(AccessLevel.CONTROLLER, level=AccessLevel.CONTROLLER)
    command = f.lower_grant(AccessLevel.OBSERVER, now=0)
    assert f.level is AccessLevel.OBSERVER and f.grant is AccessLevel.OBSERVER
    sent = parse_command(command.rstrip(b"\n"))
    assert sent.args[-1] == "Observer"
    assert f.from_upstream(f"OK {sent.ident}".encode()).to_client == b""  # gateway's own
    assert f.from_client(b"9 OPEN", now=0).to_upstream == b""


def test_payload_is_recorded_by_size_and_digest_not_content() -> None:
    body = "aGVsbG8gd29ybGQ="
    raw = f"3 FILE:WRITE public_run_complete/x.txt <quote.base64>\n{body}\n</quote.base64>"
    verdict = _filter(level=AccessLevel.CONTROLLER).from_client(raw.encode(), now=0)
    assert verdict.payload is not None
    content = f"\n{body}\n".encode()
    assert verdict.payload.size == len(content)
    assert verdict.payload.sha256 == hashlib.sha256(content).hexdigest()
    assert body not in " ".join(verdict.args)


def test_what_is_forwarded_is_the_command_that_was_checked() -> None:
    f = _filter(level=AccessLevel.OBSERVER)
    verdict = f.from_client(b"6 DRAW?", now=0)
    sent = parse_command(verdict.to_upstream.rstrip(b"\n"))
    assert sent == Command(ident=2, name="DRAW?", options=(), args=(), body=None)


def test_malformed_command_is_answered_not_forwarded() -> None:
    verdict = _filter(level=AccessLevel.CONTROLLER).from_client(b"\xff\xfe not scpi", now=0)
    assert verdict.decision is Decision.MALFORMED and verdict.to_upstream == b""
    assert isinstance(parse_reply(verdict.to_client.rstrip(b"\n")), Error)


def test_configuration_arguments_never_reach_the_audit_record() -> None:
    f = _filter(AccessLevel.ADMINISTRATOR, level=AccessLevel.ADMINISTRATOR)
    verdict = f.from_client(b"4 CONF access secrets hunter2 Full", now=0)
    assert verdict.to_upstream == b""  # CONF needs Full, which needs allow_full
    assert "hunter2" not in " ".join(verdict.args)
    assert "hunter2" not in verdict.reason


@pytest.mark.parametrize(
    "raw",
    [
        b"OK 2",
        b"OK 2 -stealth=False -exclusive=False Observer",
        b"OK 2 <quote.base64>\naGVsbG8=\n</quote.base64>",
        b'ERRor 2 [InsufficientAccess] -requiredAccess="Controller" --> no',
        b"ERRor 2 --> plain",
        b"WARNing 2 careful",
        b"OK 02 not canonical",
        b"ok 2 lower case",
        b"OK 2",
        b"WARNing 2",
        b"OK 2  two spaces",
        b"OK 2 caf\xc3\xa9, not ASCII",
    ],
)
def test_relayed_reply_is_the_parsed_reply_under_the_clients_ident(raw: bytes) -> None:
    f = _filter(level=AccessLevel.OBSERVER)
    f.from_client(b"77 POW?", now=0)
    out = f.from_upstream(raw).to_client
    assert out == serialise(replace(parse_reply(raw), ident=77))


@pytest.mark.parametrize(
    "raw",
    [
        b"5 ACC $(SYST:EXEC id) Observer",
        b"5 ACC -stealth=$(OPEN) Observer",
        b"5 ACC -evil=true Observer",
        b"5 ACC Observer <quote>x</quote>",
        b"5 ACC",
    ],
)
def test_access_requests_with_anything_extra_are_refused(raw: bytes) -> None:
    verdict = _filter(AccessLevel.CONTROLLER).from_client(raw, now=0)
    assert verdict.to_upstream == b""
    error = parse_reply(verdict.to_client.rstrip(b"\n"))
    assert isinstance(error, Error) and error.error_class == "InvocationError"


def test_access_request_is_followed_as_rebuilt() -> None:
    f = _filter(AccessLevel.CONTROLLER)
    f.from_client(b'5 ACC -stealth="False" -exclusive=false "observer"', now=0)
    ahead, _ = f.from_client(b"6 POW?", now=0).to_upstream.split(b"\n", 1)
    sent = parse_command(ahead)
    assert sent.options == (("stealth", "false"), ("exclusive", "false"))
    assert sent.args == ("Observer",)


def test_reply_that_is_not_utf8_is_dropped_however_canonical_its_head() -> None:
    f = _filter(level=AccessLevel.OBSERVER)
    f.from_client(b"77 POW?", now=0)
    assert f.from_upstream(b"OK 2 \xff\xfe").parts == ()


def _pooling(level: AccessLevel = AccessLevel.OBSERVER) -> SessionFilter:
    return SessionFilter(
        grant=AccessLevel.CONTROLLER,
        next_ident=2,
        level=level,
        keep_upstream=True,
        upstream_level=level,
    )


def test_a_plain_session_leaves_its_connection_reusable_and_quit_is_answered_here() -> None:
    f = _pooling()
    sent = f.from_client(b"0 POW?", now=0)
    assert not f.reusable  # a command awaits its reply
    f.from_upstream(b"OK %d ON" % parse_command(sent.to_upstream.rstrip(b"\n")).ident)
    assert f.reusable
    quit_ = f.from_client(b"1 QUIT", now=0)
    assert quit_.decision is Decision.ANSWERED and quit_.to_upstream == b""
    assert quit_.to_client == b"OK 1\n" and f.quit


def test_quit_goes_to_the_instrument_while_a_reply_is_awaited() -> None:
    f = _pooling()
    f.from_client(b"0 POW?", now=0)
    quit_ = f.from_client(b"1 QUIT", now=0)
    assert quit_.decision is Decision.ALLOWED and not f.quit and not f.reusable


@pytest.mark.parametrize(
    "line",
    [
        b"0 SUBS+ Temperature",
        b"0 SUBS+ -timestamp=true Run",
        b"0 UNS Temperature",
        b"0 RET $(POW?)",  # nested commands: SUBS+ is refused there, others are not known
        b"0 ACC -exclusive=true Observer",
        b"0 ACC -stealth=true Observer",
    ],
)
def test_what_could_carry_over_makes_the_connection_unusable_for_others(line: bytes) -> None:
    f = _pooling()
    verdict = f.from_client(line, now=0)
    if verdict.to_upstream:
        ident = parse_command(verdict.to_upstream.rstrip(b"\n")).ident
        f.from_upstream(b"OK %d" % ident)
    assert f.unclean and not f.reusable


@pytest.mark.parametrize(
    "reply",
    [b"MESSage Temperature 37.0", b"OK 99", b"READy -session=1", b"\xff garbage", b"ERRor 77 x"],
)
def test_anything_unexpected_from_the_instrument_makes_the_connection_unusable(
    reply: bytes,
) -> None:
    f = _pooling()
    f.from_upstream(reply)
    assert f.unclean and not f.reusable


def test_without_warm_connections_quit_goes_to_the_instrument() -> None:
    f = _filter()
    assert f.from_client(b"0 QUIT", now=0).decision is Decision.ALLOWED and not f.reusable
