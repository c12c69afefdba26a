"""The protocol as a client sees it, byte for byte: greeting, passwords, levels, junk."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import pytest

from labgate.instrument.simulator import RunningSimulator
from labgate.scpi.messages import Error, Message, Next, Ok, Ready

Raw = Callable[[tuple[str, int] | None], Any]

CLIENT_HELLO = bytes.fromhex(
    "160301 00dd 010000d9 0303" + "ab" * 32 + "20" + "cd" * 32 + "0014 1302 1301 1303 c02c c02b"
)


def _login(client: Any, password: str, level: str = "Controller") -> None:
    challenge = client.ask("0 CHAL?")
    assert isinstance(challenge, Ok)
    answer = hmac.new(password.encode(), challenge.text.encode(), hashlib.md5).hexdigest()
    assert client.ask(f"1 AUTH {answer}") == Ok(ident=1)
    assert client.ask(f"2 ACC -stealth=false -exclusive=false {level}") == Ok(ident=2)


def test_greeting_names_session_product_and_version(threaded: RunningSimulator, raw: Raw) -> None:
    client = raw(threaded.plain)
    assert isinstance(client.greeting, Ready)
    options = dict(client.greeting.options)
    assert options["product"] == "QuantStudio3_5"
    assert options["version"] == "1.3.0"
    assert options["capabilities"] == "Index"
    assert options["session"].isdigit()


def test_challenge_is_hex_with_a_letter(threaded: RunningSimulator, raw: Raw) -> None:
    client = raw(threaded.plain)
    for ident in range(20):
        reply = client.ask(f"{ident} CHAL?")
        assert isinstance(reply, Ok)
        int(reply.text, 16)
        assert any(char in "abcdef" for char in reply.text)


def test_correct_answer_raises_the_reachable_level(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, controller_password)
    assert client.ask("3 ACC?") == Ok(ident=3, text="-stealth=False -exclusive=False Controller")


def test_wrong_answer_is_an_auth_error(threaded: RunningSimulator, raw: Raw) -> None:
    client = raw(threaded.plain)
    client.ask("0 CHAL?")
    reply = client.ask("1 AUTH " + "0" * 32)
    assert isinstance(reply, Error) and reply.error_class == "AuthError"
    denied = client.ask("2 ACC Controller")
    assert isinstance(denied, Error) and denied.error_class == "AccessLevelExceeded"
    assert dict(denied.fields) == {"accessLimit": '"Guest"'}


def test_an_answer_cannot_be_replayed(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    client = raw(threaded.plain)
    challenge = client.ask("0 CHAL?")
    answer = hmac.new(controller_password.encode(), challenge.text.encode(), "md5").hexdigest()
    assert client.ask(f"1 AUTH {answer}") == Ok(ident=1)
    other = raw(threaded.plain)
    replayed = other.ask(f"0 AUTH {answer}")  # no challenge on this session
    assert isinstance(replayed, Error) and replayed.error_class == "AuthError"
    other.ask("1 CHAL?")
    again = other.ask(f"2 AUTH {answer}")  # an answer to a different challenge
    assert isinstance(again, Error) and again.error_class == "AuthError"


def test_guest_is_refused_queries_with_required_and_current_level(
    threaded: RunningSimulator, raw: Raw
) -> None:
    client = raw(threaded.plain)
    reply = client.ask("0 DRAW?")
    assert isinstance(reply, Error) and reply.error_class == "InsufficientAccess"
    assert dict(reply.fields) == {"requiredAccess": '"Observer"', "currentAccess": '"Guest"'}


def test_nested_command_needs_its_own_level(
    threaded: RunningSimulator, raw: Raw, observer_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, observer_password, "Observer")
    reply = client.ask("3 RET $(OPEN)")
    assert isinstance(reply, Error) and reply.error_class == "InsufficientAccess"
    assert dict(reply.fields)["requiredAccess"] == '"Controller"'
    assert client.ask("4 DRAW?") == Ok(ident=4, text="Closed")


def test_ret_substitutes_commands_variables_and_quotes_spaces(
    threaded: RunningSimulator, raw: Raw, observer_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, observer_password, "Observer")
    reply = client.ask("3 RET $(DRAW?) ${RunTitle:--} ${Nothing:-fallback} $(LST?)")
    assert isinstance(reply, Ok)
    drawer, title, fallback, lamp = reply.text.split(" ", 3)
    assert (drawer, title, fallback) == ("Closed", "-", "fallback")
    assert lamp.startswith('"On ') and lamp.endswith('"')


def test_only_qslib_fixed_expressions_are_evaluated(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, controller_password)
    assert client.ask('3 RET $[ "$(ENG?)" or "unknown" ]') == Ok(ident=3, text="Down")
    marker = threaded.config.state_dir / "pwned"
    reply = client.ask(f"4 RET $[ open('{marker}', 'w').write('x') ]")
    assert isinstance(reply, Error) and reply.error_class == "InvocationError"
    assert "fixed" in reply.message
    assert not marker.exists()
    # Same shape as a fixed expression, other text: not one of qslib's, so not evaluated.
    near_miss = client.ask('5 RET $[ "$(DRAW?)" or "unknown" ]')
    assert isinstance(near_miss, Error) and "fixed" in near_miss.message


def test_arbitrary_expression_needs_controller(
    threaded: RunningSimulator, raw: Raw, observer_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, observer_password, "Observer")
    reply = client.ask("3 RET $[ 1 + 1 ]")
    assert isinstance(reply, Error) and reply.error_class == "InsufficientAccess"


def test_shell_and_python_pass_at_controller_and_are_only_recorded(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, controller_password)
    assert client.ask('3 SYST:EXEC "killall zygote"') == Ok(ident=3)
    assert client.ask("4 eval? 1+1") == Ok(ident=4)
    commands = [entry.get("command") for entry in threaded.received()]
    assert "SYSTEM:EXEC" in commands and "EVAL?" in commands


def test_shell_is_refused_below_controller(
    threaded: RunningSimulator, raw: Raw, observer_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, observer_password, "Observer")
    reply = client.ask('3 SYST:EXEC "id"')
    assert isinstance(reply, Error) and reply.error_class == "InsufficientAccess"


def test_drawer_moves_answer_next_then_ok(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, controller_password)
    assert client.ask("3 OPEN") == Next(ident=3)
    assert client.read() == Ok(ident=3)
    assert client.ask("4 CLOSE") == Next(ident=4)
    assert client.read() == Ok(ident=4)


def test_pause_without_a_run_is_refused(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, controller_password)
    reply = client.ask("3 PAUSe")
    assert isinstance(reply, Error) and "No run" in reply.message


def test_temperature_events_arrive_after_subscribing_and_stop_after_uns(
    threaded: RunningSimulator, raw: Raw, observer_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, observer_password, "Observer")
    assert client.ask("3 SUBS+ -timestamp=true Temperature") == Ok(ident=3)
    event = client.read()
    assert isinstance(event, Message) and event.topic == "Temperature"
    assert event.timestamp is not None and event.timestamp > 1.7e9
    assert "-sample=" in event.text and "-block=" in event.text and "-cover=" in event.text
    client.send("4 UNS Temperature")
    while not isinstance(reply := client.read(), Ok):
        assert isinstance(reply, Message)
    assert reply == Ok(ident=4)
    time.sleep(0.3)
    client.send("5 ACC?")
    assert isinstance(client.read(), Ok)  # no event in between


def test_run_events_follow_stages(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, controller_password)
    protocol = (
        "3 PROTOCOL -volume=20 -runmode=standard short <multiline.protocol>\n"
        "\tSTAGE 1 STAGE_1 <multiline.stage>\n\t\tSTEP 1 <multiline.step>\n"
        "\t\t\tRAMP 95\n\t\t\tHOLD 5\n\t\t</multiline.step>\n\t</multiline.stage>\n"
        "\tSTAGE -repeat=2 2 STAGE_2 <multiline.stage>\n\t\tSTEP 1 <multiline.step>\n"
        "\t\t\tRAMP 60\n\t\t\tHOLD 5\n\t\t</multiline.step>\n\t</multiline.stage>\n"
        "</multiline.protocol>"
    )
    assert client.ask(protocol) == Ok(ident=3)
    assert client.ask("4 SUBS+ Run") == Ok(ident=4)
    assert client.ask("5 RP short quick") == Next(ident=5)
    texts = []
    while not isinstance(reply := client.read(), Ok):
        assert isinstance(reply, Message) and reply.topic == "Run"
        texts.append(reply.text)
    assert reply.ident == 5
    assert texts[0] == "Starting quick"
    assert "Stage 2" in texts and "Cycle 2" in texts
    assert texts[-1] == "Ended"


def test_help_lists_commands_and_names_unknown_ones(
    threaded: RunningSimulator, raw: Raw, observer_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, observer_password, "Observer")
    listing = client.ask("3 HELP?")
    assert isinstance(listing, Ok) and "FILE:READ?" in listing.text and "RET" in listing.text
    unknown = client.ask("4 HELP? NOSUCH")
    assert isinstance(unknown, Error) and unknown.error_class == "NoMatch"
    foo = client.ask("5 FOO")
    assert isinstance(foo, Error) and foo.message == "Unknown command FOO"


def test_quit_answers_then_closes(threaded: RunningSimulator, raw: Raw) -> None:
    client = raw(threaded.plain)
    assert client.ask("0 QUIT") == Ok(ident=0)
    assert client.closed_by_server()


def test_tls_client_hello_on_the_plain_port_is_survived(
    threaded: RunningSimulator, raw: Raw
) -> None:
    client = raw(threaded.plain)
    client.sock.sendall(CLIENT_HELLO)
    client.close()
    with_newline = raw(threaded.plain)
    with_newline.sock.sendall(CLIENT_HELLO + b"\n")
    reply = with_newline.read()
    assert isinstance(reply, Error) and reply.error_class in ("InvocationError",)
    fresh = raw(threaded.plain)
    assert fresh.ask("0 ACC?") == Ok(ident=0, text="-stealth=False -exclusive=False Guest")


def test_client_vanishing_mid_message_is_survived(threaded: RunningSimulator, raw: Raw) -> None:
    client = raw(threaded.plain)
    client.sock.sendall(b"0 FILE:WRITE public_run_complete:x <quote.base64>\nAAAA")
    client.close()
    fresh = raw(threaded.plain)
    assert fresh.ask("0 ACC?") == Ok(ident=0, text="-stealth=False -exclusive=False Guest")


def test_oversized_line_is_answered_with_error_then_closed(
    threaded: RunningSimulator, raw: Raw
) -> None:
    client = raw(threaded.plain)
    # The server may hang up before it has read everything.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        client.sock.sendall(b"0 RET " + b"x" * (80 * 1024))
    reply = client.read()
    assert isinstance(reply, Error) and "input refused" in reply.message
    assert client.closed_by_server()
    fresh = raw(threaded.plain)
    assert isinstance(fresh.ask("0 ACC?"), Ok)


def test_undecodable_bytes_are_an_error_and_the_session_goes_on(
    threaded: RunningSimulator, raw: Raw
) -> None:
    client = raw(threaded.plain)
    reply = client.ask(b"7 \xff\xfe\n")
    assert isinstance(reply, Error) and reply.ident == 7
    assert isinstance(client.ask("8 ACC?"), Ok)


def test_every_command_is_in_the_command_log(threaded: RunningSimulator, raw: Raw) -> None:
    client = raw(threaded.plain)
    client.ask("0 ACC?")
    client.ask("1 DRAW?")
    entries = threaded.received()
    assert [entry["command"] for entry in entries[-2:]] == ["ACCESS?", "DRAWER?"]
    assert entries[-1]["listener"] == "plain"
    assert entries[-1]["level"] == "Guest"


@pytest.mark.parametrize("password_fixture", ["controller_password", "observer_password"])
def test_secrets_never_reach_the_command_log(
    threaded: RunningSimulator, raw: Raw, password_fixture: str, request: pytest.FixtureRequest
) -> None:
    password = request.getfixturevalue(password_fixture)
    client = raw(threaded.plain)
    _login(client, password, "Observer")
    log_text = threaded.command_log.read_text()
    assert password not in log_text
    auth = [entry for entry in threaded.received() if entry["command"] == "AUTH"]
    assert auth and all(entry["raw"] == "1 AUTH [redacted]" for entry in auth)


def test_a_failing_handler_answers_an_error_and_the_session_goes_on(
    make_config: Callable[..., Any], tmp_path: Any, raw: Raw
) -> None:
    from labgate.instrument import run_in_thread
    from labgate.instrument.commands import COMMANDS
    from labgate.instrument.dispatch import Entry

    async def broken(session: Any, command: Any) -> Any:
        raise RuntimeError("bug")

    handlers = {**COMMANDS, "ACCESS?": Entry(handler=broken, help="ACC?: broken")}
    with run_in_thread(make_config(tmp_path), handlers=handlers) as simulator:
        client = raw(simulator.plain)
        reply = client.ask("0 ACC?")
        assert isinstance(reply, Error) and reply.message == "internal error in the simulator"
        assert client.ask("1 ACC Guest") == Ok(ident=1)


def test_files_are_moved_and_removed_over_the_wire(
    threaded: RunningSimulator, raw: Raw, controller_password: str
) -> None:
    client = raw(threaded.plain)
    _login(client, controller_password)
    body = "aGVsbG8Kd29ybGQ=\n"  # what qslib sent in a captured FILE:WRITE
    written = client.ask(
        f"3 FILE:WRITE public_run_complete:new.txt <quote.base64>\n{body}\n</quote.base64>"
    )
    assert written == Ok(ident=3)
    assert client.ask("4 FILE:MOVE public_run_complete:new.txt experiments:moved.txt") == Ok(
        ident=4
    )
    read = client.ask("5 FILE:READ? experiments:moved.txt")
    assert read == Ok(ident=5, text="<quote>\nhello\nworld</quote>")
    assert client.ask("6 FILE:REMOVE experiments:moved.txt") == Ok(ident=6)
    gone = client.ask("7 FILE:READ? experiments:moved.txt")
    assert isinstance(gone, Error) and gone.error_class == "NoMatch"
    listed = client.ask("8 FILE:LIST? public_run_complete:new*")
    assert listed == Ok(ident=8, text="<quote.reply>\n</quote.reply>")
