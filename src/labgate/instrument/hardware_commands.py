"""Commands for the machine's parts: drawer, cover, power, block, temperatures, status LED."""

from __future__ import annotations

import asyncio

from labgate.instrument.dispatch import handles
from labgate.instrument.expansion import expanded_args
from labgate.instrument.hardware import LED_COLORS, LED_MODES, format_series
from labgate.instrument.session import Deferred, Outcome, Session, error
from labgate.scpi.messages import Command, Error, Ok


def _motion(session: Session, command: Command, topic_text: str) -> Deferred:
    """A slow mechanical move: `NEXT` now, `OK` when the motor is done."""

    async def work() -> Ok | Error:
        await asyncio.sleep(session.state.motion_seconds())
        session.state.announce("Drawer", topic_text)
        return Ok(ident=command.ident)

    return Deferred(work=work)


@handles("OPEN", help="OPEN: open the drawer (raises the cover first)")
async def drawer_open(session: Session, command: Command) -> Outcome:
    hardware = session.state.hardware
    # The position changes at once so a client that drops the connection still moved it.
    hardware.cover, hardware.drawer = "Up", "Open"
    return _motion(session, command, "Open")


@handles("CLOSE", help="CLOSE: close the drawer")
async def drawer_close(session: Session, command: Command) -> Outcome:
    session.state.hardware.drawer = "Closed"
    return _motion(session, command, "Closed")


@handles("COVERDOWN", help="COVerDOWN: lower the heated cover onto the plate")
async def cover_down(session: Session, command: Command) -> Outcome:
    hardware = session.state.hardware
    if hardware.drawer != "Closed":
        return error(command.ident, "InvocationError", "Cannot lower the cover: drawer is open")
    hardware.cover = "Down"
    return _motion(session, command, "CoverDown")


@handles("DRAWER?", help="DRAW?: drawer position (Open, Closed)")
async def drawer_position(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.drawer)


@handles("ENG?", help="ENG?: cover position (Up, Down)")
async def cover_position(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.cover)


@handles("POW?", help="POW?: power state (ON, OFF)")
async def power_state(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text="ON" if session.state.hardware.power else "OFF")


@handles("POW", help="POW on|off: lamp and temperature control power")
async def power_set(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    words = {"on": True, "true": True, "off": False, "false": False}
    if len(args) != 1 or args[0].lower() not in words:
        return error(command.ident, "InvocationError", "POW needs on or off")
    session.state.hardware.power = words[args[0].lower()]
    return Ok(ident=command.ident)


@handles("BLOCK?", help="BLOCK?: block control (ON/OFF) and set point")
async def block_state(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.block_status())


@handles("BLOCK", help="BLOCK ON [temperature] | OFF: block temperature control")
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


@handles("LST?", help="LST?: lamp status and temperature")
async def lamp_status(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.lamp_status())


@handles("TBC:SAMPLETEMPERATURES?", help="TBC:SampleTemperatures?: sample temperatures by zone")
async def sample_temperatures(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=format_series(session.state.hardware.sample))


@handles("TBC:BLOCKTEMPERATURES?", help="TBC:BlockTemperatures?: block temperatures by zone")
async def block_temperatures(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=format_series(session.state.hardware.block))


@handles("TBC:COVERTEMPERATURES?", help="TBC:CoverTemperatures?: heated cover temperature")
async def cover_temperature(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=f"{session.state.hardware.cover_temperature:.1f}")


@handles("TBC:SETT?", help="TBC:SETT?: temperature set points")
async def settings(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.settings())


@handles("TBC:CONT?", help="TBC:CONT?: which zones are under control")
async def controls(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.controls())


@handles("TBC:CONTROLZONES?", help="TBC:ControlZones?: number of block zones")
async def zone_count(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=str(len(session.state.hardware.block)))


@handles("LED:LEDTEMPERATURE?", help="LED:LEDTemperature?: excitation LED temperature")
async def led_temperature(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text="36.6")


@handles("LED:STATUS?", help="LED:STATus?: status LED colour and mode")
async def led_status(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident, text=session.state.hardware.led_status())


@handles("LED:LIGHTOFF", help="LED:LightOFF: status LED off")
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


for _colour in LED_COLORS:
    handles(
        *(f"LED:{_colour}{_mode}" for _mode in LED_MODES),
        help=f"LED:{_colour}ON|OFF|BLINK: status LED",
    )(led_set)
