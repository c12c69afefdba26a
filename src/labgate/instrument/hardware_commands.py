"""Commands for the machine's parts: drawer, cover, power, block, temperatures, status LED."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from labgate.instrument.dispatch import table
from labgate.instrument.expansion import expanded_args
from labgate.instrument.hardware import LED_COLORS, LED_MODES, format_series
from labgate.instrument.outcomes import Deferred, Outcome, error
from labgate.scpi.messages import Command, Error, Ok

if TYPE_CHECKING:
    from labgate.instrument.session import Session


def _motion(session: Session, command: Command, topic_text: str) -> Deferred:
    """A slow mechanical move: `NEXT` now, `OK` when the motor is done."""

    async def work() -> Ok | Error:
        await asyncio.sleep(session.state.motion_seconds())
        session.state.announce("Drawer", topic_text)
        return Ok(ident=command.ident)

    return Deferred(work=work)


async def drawer_open(session: Session, command: Command) -> Outcome:
    hardware = session.state.hardware
    # The position changes at once so a client that drops the connection still moved it.
    hardware.cover, hardware.drawer = "Up", "Open"
    return _motion(session, command, "Open")


async def drawer_close(session: Session, command: Command) -> Outcome:
    session.state.hardware.drawer = "Closed"
    return _motion(session, command, "Closed")


async def cover_down(session: Session, command: Command) -> Outcome:
    hardware = session.state.hardware
    if hardware.drawer != "Closed":
        return error(command.ident, "InvocationError", "Cannot lower the cover: drawer is open")
    hardware.cover = "Down"
    return _motion(session, command, "CoverDown")


async def drawer_position(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.drawer)


async def cover_position(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.cover)


async def power_state(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text="ON" if session.state.hardware.power else "OFF")


async def power_set(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    words = {"on": True, "true": True, "off": False, "false": False}
    if len(args) != 1 or args[0].lower() not in words:
        return error(command.ident, "InvocationError", "POW needs on or off")
    session.state.hardware.power = words[args[0].lower()]
    return Ok(ident=command.ident)


async def block_state(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.block_status())


async def block_set(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    hardware = session.state.hardware
    if not args or args[0].upper() not in ("ON", "OFF"):
        return error(command.ident, "InvocationError", "BLOCK needs ON or OFF")
    hardware.block_control = args[0].upper() == "ON"
    if len(args) > 1:
        try:
            hardware.block_setpoints = [float(args[1])] * len(hardware.block_setpoints)
        except ValueError:
            return error(command.ident, "InvocationError", f"{args[1]!r} is not a temperature")
    return Ok(ident=command.ident)


async def lamp_status(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.lamp_status())


async def sample_temperatures(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=format_series(session.state.hardware.sample))


async def block_temperatures(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=format_series(session.state.hardware.block))


async def cover_temperature(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=f"{session.state.hardware.cover_temperature:.1f}")


async def settings(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.settings())


async def controls(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.controls())


async def zone_count(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=str(len(session.state.hardware.block)))


async def led_temperature(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text="36.6")


async def led_status(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.led_status())


async def led_off(session: Session, command: Command) -> Outcome:
    session.state.hardware.led_color = None
    session.state.hardware.led_mode = "OFF"
    return Ok(ident=command.ident)


async def led_set(session: Session, command: Command) -> Outcome:
    verb = command.canonical.removeprefix("LED:")
    mode = next(mode for mode in LED_MODES if verb.endswith(mode))
    hardware = session.state.hardware
    hardware.led_color = None if mode == "OFF" else verb.removesuffix(mode)
    hardware.led_mode = mode
    return Ok(ident=command.ident)


COMMANDS = table(
    ("OPEN", drawer_open, "OPEN: open the drawer (raises the cover first)"),
    ("CLOSE", drawer_close, "CLOSE: close the drawer"),
    ("COVERDOWN", cover_down, "COVerDOWN: lower the heated cover onto the plate"),
    ("DRAWER?", drawer_position, "DRAW?: drawer position (Open, Closed)"),
    ("ENG?", cover_position, "ENG?: cover position (Up, Down)"),
    ("POW?", power_state, "POW?: power state (ON, OFF)"),
    ("POW", power_set, "POW on|off: lamp and temperature control power"),
    ("BLOCK?", block_state, "BLOCK?: block control (ON/OFF) and set point"),
    ("BLOCK", block_set, "BLOCK ON [temperature] | OFF: block temperature control"),
    ("LST?", lamp_status, "LST?: lamp status and temperature"),
    (
        "TBC:SAMPLETEMPERATURES?",
        sample_temperatures,
        "TBC:SampleTemperatures?: sample temperatures by zone",
    ),
    (
        "TBC:BLOCKTEMPERATURES?",
        block_temperatures,
        "TBC:BlockTemperatures?: block temperatures by zone",
    ),
    (
        "TBC:COVERTEMPERATURES?",
        cover_temperature,
        "TBC:CoverTemperatures?: heated cover temperature",
    ),
    ("TBC:SETT?", settings, "TBC:SETT?: temperature set points"),
    ("TBC:CONT?", controls, "TBC:CONT?: which zones are under control"),
    ("TBC:CONTROLZONES?", zone_count, "TBC:ControlZones?: number of block zones"),
    ("LED:LEDTEMPERATURE?", led_temperature, "LED:LEDTemperature?: excitation LED temperature"),
    ("LED:STATUS?", led_status, "LED:STATus?: status LED colour and mode"),
    ("LED:LIGHTOFF", led_off, "LED:LightOFF: status LED off"),
    *(
        (
            tuple(f"LED:{colour}{mode}" for mode in LED_MODES),
            led_set,
            f"LED:{colour}ON|OFF|BLINK: status LED",
        )
        for colour in LED_COLORS
    ),
)
