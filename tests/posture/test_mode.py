"""The `[secure]` core alone: switches parsed, sources judged, levels capped."""

from __future__ import annotations

import pytest

from labgate.posture.mode import (
    FULL_REASON,
    SecureConfig,
    SwitchError,
    cap_level,
    parse_switches,
)
from labgate.scpi.access import AccessLevel


def test_a_table_without_switches_is_all_on_and_no_table_is_all_off() -> None:
    assert SecureConfig.from_table({}).describe() == "all"
    legacy = SecureConfig.from_table(None)
    assert legacy.describe() == "none" and not legacy.present


@pytest.mark.parametrize(
    ("arguments", "on", "off"),
    [
        (["+all"], {"pwd", "fw", "full"}, set()),
        (["all", "-pwd"], {"fw", "full"}, {"pwd"}),
        (["-all", "+fw"], {"fw"}, {"pwd", "full"}),
        (["full"], {"full"}, set()),
    ],
)
def test_switches_last_word_wins(arguments: list[str], on: set[str], off: set[str]) -> None:
    switches = parse_switches(arguments)
    assert switches.on == on and switches.off == off


@pytest.mark.parametrize("bad", ["+scp", "pw", "--all", "+", "", "ALL"])
def test_unknown_switch_is_refused_by_name(bad: str) -> None:
    with pytest.raises(SwitchError, match="expected"):
        parse_switches([bad])


def test_sources_outside_client_networks_are_refused_in_every_spelling() -> None:
    mode = SecureConfig.from_table({"client_networks": ["10.1.0.0/16", "fd00::/8"]})
    assert mode.admits_source("10.1.2.3")
    assert mode.admits_source("::ffff:10.1.2.3")  # IPv4-mapped: judged as the IPv4 address
    assert mode.admits_source("fd00::1%eth0")
    outside_all = ("10.2.0.1", "::ffff:10.2.0.1", "127.0.0.1", "::1", "unknown", "", "10.1.0.0/16")
    for outside in outside_all:
        assert not mode.admits_source(outside), outside
    assert SecureConfig.from_table({"fw": False}).admits_source("203.0.113.9")


@pytest.mark.parametrize("level", list(AccessLevel))
def test_full_caps_every_level_above_controller(level: AccessLevel) -> None:
    capped = cap_level(SecureConfig.from_table({"full": True}), level)
    assert capped.level == min(level, AccessLevel.CONTROLLER)
    assert capped.reason == (FULL_REASON if level > AccessLevel.CONTROLLER else "")
    assert cap_level(SecureConfig.from_table({"full": False}), level).level == level
