"""Substitution as the instrument does it: `$(command)`, `${Var:-default}`, and `$[...]`.

The scpi core parses a token into nodes; this module gives each node its value. `$(...)` runs the
nested command through the session (so it is access-checked like any other) and takes its reply
body. `$[...]` would run Python on a real instrument. The simulator evaluates only the fixed
expressions that qslib's `machine_status()` and `run_status()` send (`access.FIXED_EXPRESSIONS`,
byte for byte), by matching their shape after their own substitutions; any other expression is
refused, never executed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from labgate.instrument.dispatch import table
from labgate.instrument.outcomes import Outcome, Refusal, error
from labgate.scpi import values
from labgate.scpi.access import FIXED_EXPRESSIONS
from labgate.scpi.errors import MessageError, ParseError
from labgate.scpi.messages import Command, Error, Ok
from labgate.scpi.substitution import CommandSub, ExprSub, Node, Text, VarSub, parse

if TYPE_CHECKING:
    from labgate.instrument.session import Session

_OR_DEFAULT = re.compile(r'\s*"(?P<value>[^"]*)"\s+or\s+"(?P<fallback>[^"]*)"\s*')
_VARIABLES = r"\s*top\.getChild\('PROTOcolDEFinition'\)\.variables\.get\("
_STAGES = re.compile(_VARIABLES + r"'(?P<macro>[^']*)-Stages'\.lower\(\),\s*-1\)\s*")
_STAGE_COUNT = re.compile(
    _VARIABLES + r"'(?P<macro>[^']*)-Stage(?P<stage>[^']*)-Count'\.lower\(\),\s*-1\)\s*"
)


NOT_EVALUATED = "The simulator evaluates only qslib's fixed status expressions"


async def expanded_args(session: Session, command: Command) -> tuple[str, ...]:
    """The command's arguments with substitutions done and quotes removed."""
    return tuple([await expand(session, command, token) for token in command.args])


async def expand(session: Session, command: Command, token: str) -> str:
    try:
        nodes = parse(token)
    except ParseError as exc:
        raise Refusal(_invocation(command, str(exc))) from None
    text = await _render(session, command, nodes)
    if token[:1] in ('"', "'"):
        try:
            return values.unquote(text)
        except ParseError:
            return text[1:-1]
    return text


async def _render(session: Session, command: Command, nodes: tuple[Node, ...]) -> str:
    parts = []
    for node in nodes:
        if isinstance(node, Text):
            parts.append(node.source)
        elif isinstance(node, VarSub):
            parts.append(await _variable(session, command, node))
        elif isinstance(node, CommandSub):
            parts.append(await _nested(session, command, node))
        elif isinstance(node, ExprSub):
            if node.source not in FIXED_EXPRESSIONS:
                raise Refusal(_invocation(command, NOT_EVALUATED))
            parts.append(_expression(session, command, await _render(session, command, node.nodes)))
    return "".join(parts)


async def _variable(session: Session, command: Command, node: VarSub) -> str:
    value = session.state.variables().get(node.name)
    if value is not None:
        return value
    if node.default is None:
        return ""
    return await _render(session, command, node.default)


async def _nested(session: Session, command: Command, node: CommandSub) -> str:
    try:
        inner = Command(ident=command.ident, name=node.name, options=node.options, args=node.args)
    except MessageError as exc:
        raise Refusal(_invocation(command, str(exc))) from None
    outcome = await session.execute(inner)
    if not isinstance(outcome, Ok | Error):
        outcome = await outcome.work()
    if isinstance(outcome, Error):
        raise Refusal(outcome)
    return outcome.text


def _expression(session: Session, command: Command, source: str) -> str:
    if match := _OR_DEFAULT.fullmatch(source):
        return match["value"] or match["fallback"]
    run = session.state.run
    if match := _STAGES.fullmatch(source):
        if run is None or match["macro"].lower() != run.protocol.name.lower():
            return "-1"
        return str(len(run.protocol.stages))
    if match := _STAGE_COUNT.fullmatch(source):
        if run is None or match["macro"].lower() != run.protocol.name.lower():
            return "-1"
        stage = match["stage"]
        if not stage.isdigit() or not 1 <= int(stage) <= len(run.protocol.stages):
            return "-1"
        return str(run.protocol.stages[int(stage) - 1].repeat)
    raise Refusal(_invocation(command, NOT_EVALUATED))


def _invocation(command: Command, message: str) -> Error:
    return error(command.ident, "InvocationError", message)


def _reply_token(value: str) -> str:
    """A value as one reply token: quoted when it holds spaces, raw when it holds a tag."""
    try:
        return values.quote(value) if value else '""'
    except MessageError:
        return value


async def ret(session: Session, command: Command) -> Outcome:
    results = await expanded_args(session, command)
    return Ok(ident=command.ident, text=" ".join(_reply_token(value) for value in results))


COMMANDS = table(
    ("RET", ret, "RET TOKEN...: each token with its substitutions done"),
)
