"""The one judge: a command nested anywhere gets the rule a command at the top gets, and a
command that acts on the connection's own state is never passed nested, at any level (Full
included: what the gateway answers itself or keeps track of must not change behind its back)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labgate.scpi.access import LABGATE, AccessLevel, Allowed, Denied
from labgate.scpi.judge import Answered, Context, judge
from labgate.scpi.messages import parse_command

LEVELS = list(AccessLevel)
STATE = [
    "ACC Full", "ACC -stealth=true -exclusive=true Full", "acc Controller", "ACCESS Observer",
    "ACC?", "access?", "CHAL?", "chal?", "AUTH 0123abcd", "auth 00", "QUIT", "quit",
    "SUBS+ Temperature", "subs+ -timestamp=true Run", "UNS Temperature", "RAND?",
    # what the instrument's unknown parser may fold to one of those
    ":ACC Full", '"ACC" Full', "ACCE Full", "ACC\tFull",
    # a name that a substitution makes could be any of them
    "${X:-ACC} Full", "$(RUNTitle?) Full", "$(${X:-ACC}) Full",
]  # fmt: skip
WRAPPERS = [
    "RET $({})",
    'RET "$({})"',
    "RET x$({})y",
    "RET ${{RunTitle:-$({})}}",
    "RET ${{A:-${{B:-$({})}}}}",
    'RET $[ "$({})" or "unknown" ]',
    "RET $(DRAW?) $({})",
    "RET $(RET $({}))",
    "RET $(RET $(RET $(HELP? ${{X:-$({})}})))",
    "DRAW? -x=$({})",
    "HELP? $({})",
    "SUBS+ $({})",
    "QUIT $({})",
    "ACC? $({})",
    "CHAL? $({})",
    "HELP? <quote>$({})</quote>",
    "FILE:WRITE public_run_complete/x.txt <quote>$({})</quote>",
    "SYST:EXEC $({})",
]


def _context(level: AccessLevel, grant: AccessLevel | None = None) -> Context:
    return Context(level=level, grant=level if grant is None else grant)


def _judge(text: str, level: AccessLevel, grant: AccessLevel | None = None) -> object:
    return judge(parse_command(f"7 {text}".encode()), _context(level, grant))


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("inner", STATE)
def test_a_session_state_command_nested_anywhere_is_denied_at_every_level(
    wrapper: str, inner: str
) -> None:
    for level in LEVELS:
        verdict = _judge(wrapper.format(inner), level)
        assert isinstance(verdict, Denied), (level, verdict)
        assert verdict.refusal == "InvocationError"  # no level passes it


@settings(max_examples=300, deadline=None)
@given(
    inner=st.sampled_from(STATE),
    wrappers=st.lists(st.sampled_from(WRAPPERS), min_size=1, max_size=4),
    level=st.sampled_from(LEVELS),
)
def test_however_deep_it_is_nested_it_is_denied(
    inner: str, wrappers: list[str], level: AccessLevel
) -> None:
    text = inner
    for wrapper in wrappers:
        # each wrapper is a whole command; nest it once more as a command
        text = wrapper.format(text)
    assert isinstance(_judge(text, level), Denied)


@pytest.mark.parametrize("name", [":ACC", '"ACC"', "ACCE", "ACC\tFull", "$(RUNTitle?)"])
def test_at_the_top_a_name_that_may_be_a_session_state_command_is_denied_even_at_full(
    name: str,
) -> None:
    verdict = _judge(f"{name} Full", AccessLevel.FULL)
    assert isinstance(verdict, Denied) and verdict.refusal == "InvocationError"


def test_text_that_does_not_parse_cannot_hide_one() -> None:
    # `${$(..)}` is no variable: the substitutions do not parse, and Full passes text that does
    # not parse; a plain scan still finds the nested ACC.
    verdict = _judge("RET ${$(ACC -exclusive=true Full)}", AccessLevel.FULL)
    assert isinstance(verdict, Denied) and "ACC" in verdict.reason
    assert isinstance(_judge("RET ${$(DRAW?)}", AccessLevel.FULL), Allowed)


def test_the_holders_own_commands_are_answered_at_the_top() -> None:
    for text in ("CHAL?", "AUTH 00", "ACC?"):
        verdict = _judge(text, AccessLevel.GUEST)
        assert isinstance(verdict, Answered)
    verdict = _judge("ACC Observer", AccessLevel.GUEST, AccessLevel.CONTROLLER)
    assert isinstance(verdict, Answered) and verdict.sets_level is AccessLevel.OBSERVER


def test_access_above_the_grant_is_denied_with_the_limit_and_stealth_is_sent() -> None:
    over = _judge("ACC Controller", AccessLevel.GUEST, AccessLevel.OBSERVER)
    assert isinstance(over, Denied) and over.refusal == "AccessLevelExceeded"
    stealth = _judge("ACC -stealth=true Observer", AccessLevel.GUEST, AccessLevel.OBSERVER)
    assert isinstance(stealth, Allowed) and stealth.sets_level is AccessLevel.OBSERVER


def test_what_qslib_nests_passes_at_observer() -> None:
    status = (
        'RET $(DRAWER?) $[ "$(ENG?)" or "unknown" ] $(LST?) $(TBC:SampleTemperatures?) '
        "$(TBC:BlockTemperatures?) $(TBC:CoverTemperatures?) $(TBC:SETT?) $(TBC:CONT?) "
        "$(LED:LEDTemperature?)"
    )
    assert isinstance(_judge(status, AccessLevel.OBSERVER), Allowed)
    assert isinstance(_judge("RET ${RunTitle:--} $(ISTAT?)", AccessLevel.OBSERVER), Allowed)


def test_a_nested_command_gets_the_rule_it_gets_at_the_top() -> None:
    # Same rule, same context: what a level may not run at the top it may not run nested.
    for text in ("OPEN", "SYST:EXEC id", "FILE:READ? ../etc/shadow", 'PROT? "a\'b"'):
        for level in LEVELS:
            top = _judge(text, level)
            nested = _judge(f"RET $({text})", level)
            assert isinstance(top, Allowed) == isinstance(nested, Allowed), (text, level)


def test_the_context_is_a_key_of_every_field() -> None:
    base = Context(level=AccessLevel.OBSERVER, grant=AccessLevel.CONTROLLER)
    others = [
        base._replace(level=AccessLevel.GUEST),
        base._replace(grant=AccessLevel.OBSERVER),
        base._replace(instrument="qs5"),
        base._replace(identity="labgate:user:x"),
    ]
    cache = {base: "base", **{other: "other" for other in others}}
    assert cache[base] == "base" and len(cache) == 5
    assert cache[Context(level=AccessLevel.OBSERVER, grant=AccessLevel.CONTROLLER)] == "base"
    assert base.table is LABGATE
