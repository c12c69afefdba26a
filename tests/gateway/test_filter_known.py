"""The filter recognises a command it has parsed before by its bytes after the ident (`_known`).
Property: a recognised command gets exactly the verdict, at every level, that parsing and judging
it afresh gives, whatever ident it carries and whichever ident it was first seen with."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labgate.gateway import filter as filter_module
from labgate.gateway.filter import SessionFilter, Verdict
from labgate.scpi.access import AccessLevel

WORDS = [
    "POW?", "DRAW?", "OPEN", "ACC?", "QUIT", "CHAL?", "AUTH 00", "SUBS+ Temperature",
    "ACC Observer", "ACC -stealth=true Guest", "ACC -exclusive=maybe Guest", "ACC Full",
    "ACC $(OPEN) Observer", 'RET $(OPEN) "$(POW?)"', "RET $[ 1+1 ]", "SYST:EXEC id",
    "FILE:LIST? public_run_complete", "FILE:LIST? ../etc", "EXP:NEW run(1)", 'PROT "a b"',
    "NOSUCHTHING", "-x=1 POW?", "POW? <quote>x</quote>", "RET ${LogFolder}",
]  # fmt: skip
TEXT = st.one_of(
    st.sampled_from(WORDS),
    st.text(st.characters(blacklist_characters="\n\r<>", codec="utf-8"), max_size=30),
)
IDENT = st.one_of(st.integers(0, 10**18 - 1).map(str), st.sampled_from(["007", "0", "00"]))


def _verdict(raw: bytes, level: AccessLevel, *, fresh: bool) -> tuple[Verdict, SessionFilter]:
    if fresh:
        filter_module._KNOWN.clear()
    session = SessionFilter(
        grant=AccessLevel.ADMINISTRATOR, next_ident=40, level=level, keep_upstream=True
    )
    return session.from_client(raw, now=1.0), session


def _same(a: Verdict, b: Verdict) -> bool:
    if a.command == filter_module.CHAL_QUERY:  # a fresh random challenge each time
        return a.decision == b.decision and a.command == b.command
    return a == b


@settings(max_examples=400, deadline=None)
@given(text=TEXT, first=IDENT, second=IDENT, level=st.sampled_from(list(AccessLevel)))
def test_a_recognised_command_gets_the_verdict_a_fresh_parse_gives(
    text: str, first: str, second: str, level: AccessLevel
) -> None:
    raw = f"{second} {text}".encode()
    expected, expected_state = _verdict(raw, level, fresh=True)
    _verdict(f"{first} {text}".encode(), level, fresh=True)  # seen first with another ident
    got, state = _verdict(raw, level, fresh=False)
    assert _same(got, expected)
    assert (state.unclean, state.quit, state.next_ident) == (
        expected_state.unclean,
        expected_state.quit,
        expected_state.next_ident,
    )


def test_only_short_commands_without_a_body_are_kept() -> None:
    filter_module._KNOWN.clear()
    session = SessionFilter(grant=AccessLevel.CONTROLLER, level=AccessLevel.CONTROLLER)
    session.from_client(b"1 POW?", now=0.0)
    session.from_client(b"2 FILE:WRITE experiments/x.txt <quote>abc</quote>", now=0.0)
    session.from_client(b"3 RET " + b"x" * 2000, now=0.0)
    assert list(filter_module._KNOWN) == [b"POW?"]


def test_the_cache_is_bounded() -> None:
    filter_module._KNOWN.clear()
    session = SessionFilter(grant=AccessLevel.CONTROLLER, level=AccessLevel.CONTROLLER)
    for n in range(filter_module._KNOWN_MAX + 10):
        session.from_client(b"%d RET ${Var%d}" % (n, n), now=0.0)
    assert len(filter_module._KNOWN) <= filter_module._KNOWN_MAX


def test_a_rule_that_reads_the_identity_or_the_instrument_gets_no_stale_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A per-identity (or per-instrument) rule added to the judge later: the same bytes, at the
    # same level and grant, must be judged afresh for another identity or instrument.
    from labgate.scpi.access import Denied
    from labgate.scpi.judge import judge

    def judge_with_a_rule(command: Any, context: Any) -> Any:
        if context.identity == "labgate:user:mallory" or context.instrument == "qs5-locked":
            return Denied(required=AccessLevel.FULL, command=command.canonical, reason="banned")
        return judge(command, context)

    monkeypatch.setattr(filter_module, "judge", judge_with_a_rule)
    filter_module._KNOWN.clear()
    verdicts = {}
    for identity, instrument in [
        ("labgate:user:alice", "qs5"),
        ("labgate:user:mallory", "qs5"),
        ("labgate:user:alice", "qs5-locked"),
        ("labgate:user:alice", "qs5"),
    ]:
        session = SessionFilter(
            grant=AccessLevel.CONTROLLER,
            level=AccessLevel.OBSERVER,
            upstream_level=AccessLevel.OBSERVER,
            identity=identity,
            instrument=instrument,
        )
        verdicts[(identity, instrument)] = session.from_client(b"1 POW?", now=0.0).decision
    assert verdicts == {
        ("labgate:user:alice", "qs5"): filter_module.Decision.ALLOWED,
        ("labgate:user:mallory", "qs5"): filter_module.Decision.DENIED,
        ("labgate:user:alice", "qs5-locked"): filter_module.Decision.DENIED,
    }


def test_a_verdict_on_access_follows_the_grant_at_the_same_level() -> None:
    filter_module._KNOWN.clear()
    for grant, expected in [
        (AccessLevel.OBSERVER, filter_module.Decision.DENIED),
        (AccessLevel.CONTROLLER, filter_module.Decision.ANSWERED),
        (AccessLevel.OBSERVER, filter_module.Decision.DENIED),
    ]:
        session = SessionFilter(grant=grant, level=AccessLevel.GUEST)
        assert session.from_client(b"1 ACC Controller", now=0.0).decision is expected
