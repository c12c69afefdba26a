"""The instrument's line protocol sits behind one interface (`protocol.LineProtocol`): the
gateway's connection handling imports nothing of QuantStudio's wire format from `labgate.scpi`,
and what it says and does on the wire comes from the protocol in force, not from code of its own.
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path
from typing import Any

import labgate.gateway
from labgate.gateway.config import FramingLimits
from labgate.gateway.protocol import LineProtocol, protocol_for
from labgate.gateway.quantstudio import QUANTSTUDIO
from labgate.gateway.upstream import UpstreamConnection, connect
from labgate.scpi.names import canonical

PACKAGE = Path(labgate.gateway.__file__).parent
# Where QuantStudio's specifics live: the protocol module, and the filter (its policy).
QUANTSTUDIO_MODULES = {"quantstudio", "filter"}
# What any gateway module may take from the core: the ordered levels grants are written in, and
# the core's error tree (a second protocol's errors would be its subclasses).
NEUTRAL = {("labgate.scpi.access", "AccessLevel"), ("labgate.scpi.errors", "*")}
# Left as they are, each for its reason: the configuration parses the core's framing limits and
# their defaults; `labgate instrument setup` speaks QuantStudio's access settings itself.
NOT_YET = {"config", "instrument_access"}


def _scpi_imports(path: Path) -> set[tuple[str, str]]:
    """Every (module, name) the file imports from labgate.scpi, at any depth, type-only too."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(a.name, "*") for a in node.names if a.name.startswith("labgate.scpi")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "labgate" and any(a.name == "scpi" for a in node.names):
                found.add(("labgate.scpi", "*"))
            elif node.module.startswith("labgate.scpi"):
                found |= {(node.module, a.name) for a in node.names}
    return found


def _quantstudio_specific(path: Path) -> set[tuple[str, str]]:
    return {
        (module, name)
        for module, name in _scpi_imports(path)
        if (module, name) not in NEUTRAL and (module, "*") not in NEUTRAL
    }


def test_gateway_modules_import_nothing_quantstudio_specific_from_the_core() -> None:
    offenders = {
        path.stem: sorted(_quantstudio_specific(path))
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem not in QUANTSTUDIO_MODULES | NOT_YET
    }
    assert {stem: found for stem, found in offenders.items() if found} == {}


def test_the_exceptions_are_still_exceptions() -> None:
    # One that no longer needs the core comes off the list, so the list never hides a newcomer.
    for stem in NOT_YET:
        assert _quantstudio_specific(PACKAGE / f"{stem}.py"), stem


def test_the_check_sees_an_import_of_the_wire_format(tmp_path: Path) -> None:
    source = tmp_path / "sneaky.py"
    source.write_text(
        "from labgate.scpi.access import AccessLevel\n"
        "from labgate.scpi.errors import FramingError\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from labgate.scpi.messages import Ready\n"
        "def f():\n"
        "    from labgate.scpi import framing\n"
        "    import labgate.scpi.names\n"
    )
    assert _quantstudio_specific(source) == {
        ("labgate.scpi.messages", "Ready"),
        ("labgate.scpi", "framing"),
        ("labgate.scpi.names", "*"),
    }


def test_the_connection_modules_name_no_quantstudio_line() -> None:
    # Not even by spelling it out: greeting, refusal and goodbye lines come from the protocol.
    for stem in ("server", "session", "upstream", "refusal", "reach"):
        source = (PACKAGE / f"{stem}.py").read_text()
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
        for word in ('"QUIT"', '"CHAL?"', '"AUTH"', "READy -", 'b"ERRor', "serialise("):
            assert word not in code, (stem, word)


def test_every_instrument_speaks_quantstudio_today(gateway: Any) -> None:
    for instrument in gateway.gateway.state.config.instruments:
        assert protocol_for(instrument) is QUANTSTUDIO
        assert gateway.gateway.protocols[instrument.name] is QUANTSTUDIO
    assert QUANTSTUDIO.quit_command == canonical("QUIT")
    assert QUANTSTUDIO.parse_level(QUANTSTUDIO.level_name(QUANTSTUDIO.parse_level("observer")))


def test_quantstudio_lines_are_the_ones_clients_know() -> None:
    assert QUANTSTUDIO.refused_greeting("AccessDenied") == (
        b"READy -product=labgate-gateway -refused=AccessDenied\n"
    )
    assert (
        QUANTSTUDIO.error_line(7, "IOError", "gone\n<now>") == b"ERRor 7 [IOError] --> gone (now)\n"
    )
    assert QUANTSTUDIO.goodbye(12) == b"12 QUIT\n"
    assert QUANTSTUDIO.first_ident(b"41 ACC?") == 41
    assert QUANTSTUDIO.first_ident(b"not a command") == 0
    assert QUANTSTUDIO.session_number(b"READy -session=55 -product=QuantStudio3_5\n") == "55"


def test_the_upstream_logs_in_with_the_protocol_it_is_given(gateway: Any) -> None:
    instrument = gateway.gateway.state.config.instruments[0]
    logins: list[str] = []

    async def login(*args: Any) -> UpstreamConnection:
        logins.append(args[0].name)
        return await QUANTSTUDIO.login(*args)

    other: LineProtocol = replace(QUANTSTUDIO, name="other", login=login)

    async def open_and_close() -> tuple[int, str | None]:
        upstream = await connect(instrument, limits=FramingLimits(), protocol=other)
        try:
            return upstream.next_ident, upstream.session_number
        finally:
            await upstream.close()

    next_ident, number = gateway.call(open_and_close())
    assert logins == [instrument.name]
    assert number is not None and next_ident >= 0


def test_a_refused_client_is_told_in_the_protocol_in_force(
    gateway: Any, pki: Any, raw_client: Any
) -> None:
    # The server says no in the instrument's protocol's words, not in words of its own.
    said = replace(
        QUANTSTUDIO,
        refused_greeting=lambda error_class: (
            b"READy -product=elsewhere -refused=%s\n" % error_class.encode()
        ),
        error_line=lambda ident, error_class, reason: (
            b"ERRor %d [%s] --> elsewhere: %s\n" % (ident, error_class.encode(), reason.encode())
        ),
    )
    gateway.gateway.protocols["qs5-plain"] = said
    client = raw_client(gateway, pki, "nobody")
    assert client.line() == b"READy -product=elsewhere -refused=AccessDenied"
    answer = client.ask("3 ACC?")
    assert answer.startswith(b"ERRor 3 [AccessDenied] --> elsewhere: ") and b"nobody" in answer
