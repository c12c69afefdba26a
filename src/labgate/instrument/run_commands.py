"""Protocols and runs: PROTOCOL, PROT?, RP, PAUSe, RESume, StopRun, AbortRun, and run queries."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from labgate.instrument.dispatch import option, table
from labgate.instrument.expansion import expanded_args
from labgate.instrument.outcomes import Deferred, Outcome, error
from labgate.instrument.protocols import ProtocolError, outline
from labgate.instrument.run import ProtocolDefinition, Run
from labgate.scpi.messages import Command, Error, Ok

if TYPE_CHECKING:
    from labgate.instrument.session import Session

NO_RUN = "No run in progress"


async def define(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if len(args) != 1 or command.body is None:
        return error(command.ident, "InvocationError", "PROTOCOL needs a name and a body")
    try:
        stages = outline(command.body.content)
    except ProtocolError as exc:
        return error(command.ident, "InvocationError", str(exc))
    protocol = ProtocolDefinition(
        name=args[0],
        volume=option(command, "volume", "50") or "50",
        runmode=option(command, "runmode", "standard") or "standard",
        body_tag=command.body.tag,
        body=command.body.content,
        stages=stages,
    )
    run = session.state.run
    if run is not None and run.protocol.name == protocol.name:
        refusal = run.redefine(protocol)
        if refusal is not None:
            return error(command.ident, "InvocationError", f"{protocol.name}: {refusal}")
    session.state.protocols[protocol.name] = protocol
    return Ok(ident=command.ident)


async def read_protocol(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    protocol = session.state.protocols.get(args[0]) if len(args) == 1 else None
    if protocol is None:
        return error(command.ident, "NoMatch", f"No protocol named {' '.join(args)!r}")
    return Ok(ident=command.ident, text=f"<quote.reply>{protocol.body}</quote.reply>")


async def start_run(session: Session, command: Command) -> Outcome:
    state = session.state
    args = await expanded_args(session, command)
    if len(args) != 2:
        return error(command.ident, "InvocationError", "RP needs a protocol name and a run title")
    if state.run is not None:
        return error(command.ident, "InvocationError", f"Run {state.run.title} is in progress")
    if state.hardware.drawer != "Closed":
        return error(command.ident, "InvocationError", "Cannot start a run: drawer is open")
    protocol = state.protocols.get(args[0])
    if protocol is None:
        return error(command.ident, "NoMatch", f"No protocol named {args[0]!r}")
    done = state.start_run(Run(title=args[1], protocol=protocol))

    async def work() -> Ok | Error:
        finished = await asyncio.shield(done)
        return Ok(ident=command.ident, text=finished.outcome)

    return Deferred(work=work)


def _pause_or_resume(session: Session, command: Command, pause: bool) -> Outcome:
    run = session.state.run
    if run is None:
        return error(command.ident, "InvocationError", NO_RUN)
    events = run.pause() if pause else run.resume()
    for event in events:
        session.state.announce("Run", event)

    async def work() -> Ok | Error:
        # The block settles before the instrument confirms; qslib needs the NEXT first.
        await asyncio.sleep(session.state.motion_seconds())
        return Ok(ident=command.ident)

    return Deferred(work=work)


async def pause(session: Session, command: Command) -> Outcome:
    return _pause_or_resume(session, command, pause=True)


async def resume(session: Session, command: Command) -> Outcome:
    return _pause_or_resume(session, command, pause=False)


async def _running(session: Session, command: Command) -> Run | Error:
    run = session.state.run
    if run is None:
        return error(command.ident, "InvocationError", NO_RUN)
    args = await expanded_args(session, command)
    if args and args[0] != run.title:
        return error(command.ident, "NoMatch", f"Run {args[0]!r} is not the current run")
    return run


async def abort(session: Session, command: Command) -> Outcome:
    run = await _running(session, command)
    if isinstance(run, Error):
        return run
    session.state.end_run(run.abort())
    return Ok(ident=command.ident)


async def stop(session: Session, command: Command) -> Outcome:
    run = await _running(session, command)
    if isinstance(run, Error):
        return run
    for event in run.stop():
        session.state.announce("Run", event)
    return Ok(ident=command.ident)


async def run_state(session: Session, command: Command) -> Outcome:
    run = session.state.run
    return Ok(ident=command.ident, text=run.status() if run is not None else "Idle")


async def run_title(session: Session, command: Command) -> Outcome:
    run = session.state.run
    return Ok(ident=command.ident, text=run.title if run is not None else "-")


COMMANDS = table(
    (
        "PROTOCOL",
        define,
        "PROTOCOL -volume= -runmode= NAME, then a multiline.protocol block: define",
    ),
    ("PROTOCOL?", read_protocol, "PROT? NAME: a defined protocol's body"),
    ("RP", start_run, "RP [-samplevolume=] [-runmode=] PROTOCOL TITLE: start a run"),
    ("PAUSE", pause, "PAUSe: pause the run"),
    ("RESUME", resume, "RESume: resume a paused run"),
    ("ABORTRUN", abort, "AbortRun [TITLE]: end the run now"),
    ("STOPRUN", stop, "StopRun [TITLE]: end the run when the current cycle ends"),
    ("ISTAT?", run_state, "ISTAT?: run state (Idle, Running, Paused)"),
    ("RUNTITLE?", run_title, "RUNTitle?: the current run's title, or -"),
)
