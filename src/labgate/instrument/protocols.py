"""Reading a protocol's outline (stages, repeats, step holds) from a `PROTOCOL` body.

The body is a nest of `STAGE ... <multiline.stage>` and `STEP ... <multiline.step>` blocks whose
lines are commands without idents. Each level is framed with the scpi core's `Decoder` and each
line parsed with `parse_command` (behind a placeholder ident), so no second grammar lives here.
"""

from __future__ import annotations

from labgate.instrument.errors import SimulatorError
from labgate.instrument.run import StagePlan, StepPlan
from labgate.scpi import values
from labgate.scpi.errors import FramingError, ParseError
from labgate.scpi.framing import Decoder
from labgate.scpi.messages import Command, parse_command


class ProtocolError(SimulatorError):
    """A protocol body the simulator cannot run; the message names the part."""


def outline(content: str) -> tuple[StagePlan, ...]:
    stages = []
    for line in _lines(content):
        if line.canonical not in ("STAGE", "STAGES"):
            continue
        repeat = _integer(line.option("repeat") or "1", "stage repeat")
        steps = tuple(_step(inner) for inner in _lines(_body_of(line)) if _is_step(inner))
        if not steps:
            raise ProtocolError(f"stage {' '.join(line.args)!r} has no STEP")
        stages.append(StagePlan(repeat=max(repeat, 1), steps=steps))
    if not stages:
        raise ProtocolError("protocol has no STAGE")
    return tuple(stages)


def _is_step(line: Command) -> bool:
    return line.canonical == "STEP"


def _step(line: Command) -> StepPlan:
    temperatures: tuple[float, ...] = ()
    hold = 0.0
    for action in _lines(_body_of(line)):
        if action.canonical == "RAMP":
            temperatures = tuple(_number(arg, "RAMP temperature") for arg in action.args)
        elif action.canonical in ("HOLD", "HOLDANDCOLLECT") and action.args:
            hold += _number(action.args[-1], f"{action.name} time")
    return StepPlan(temperatures=temperatures, hold=hold)


def _lines(content: str) -> list[Command]:
    decoder = Decoder()
    try:
        framed = decoder.feed(content.encode() + b"\n")
        decoder.close()
        return [parse_command(b"0 " + raw.strip()) for raw in framed if raw.strip()]
    except (FramingError, ParseError) as exc:
        raise ProtocolError(f"protocol body: {exc}") from None


def _body_of(line: Command) -> str:
    return line.body.content if line.body is not None else ""


def _number(token: str, what: str) -> float:
    try:
        return float(values.unquote(token))
    except ValueError:
        raise ProtocolError(f"{what} {token!r} is not a number") from None


def _integer(token: str, what: str) -> int:
    try:
        return int(values.unquote(token))
    except ValueError:
        raise ProtocolError(f"{what} {token!r} is not a whole number") from None
