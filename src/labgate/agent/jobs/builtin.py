"""The job types every device runs: report status, collect logs, rotate credentials, and
read-only instrument queries through the configured gateway with the device's own certificate.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from labgate import __version__
from labgate.agent.errors import AgentError
from labgate.agent.jobs.types import JobContext, JobFailed, JobRejected, Outcome
from labgate.agent.logtail import log_tail
from labgate.agent.store import DEVICE

_STARTED = datetime.now(UTC)


def _object(properties: dict[str, object], required: tuple[str, ...] = ()) -> dict[str, object]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


REPORT_STATUS_SCHEMA = _object({})
COLLECT_LOGS_SCHEMA = _object(
    {
        "max_bytes": {"type": "integer", "minimum": 1, "maximum": 65536},
        "lines": {"type": "integer", "minimum": 1, "maximum": 1000},
    }
)
ROTATE_CREDENTIALS_SCHEMA = _object({})
INSTRUMENT_ACTION_SCHEMA = _object(
    {
        "instrument": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        },
        "action": {"enum": ["run_state", "drawer", "lamp", "power"]},
    },
    required=("instrument", "action"),
)
# The only commands instrument_action sends: read-only queries, one per action.
INSTRUMENT_QUERIES = {"run_state": "ISTAT?", "drawer": "DRAW?", "lamp": "LST?", "power": "POW?"}


async def report_status(ctx: JobContext) -> Outcome:
    linked = ctx.upkeep.linked
    return {
        "agent_version": __version__,
        "serial": linked.serial,
        "certificate_not_after": linked.not_after.isoformat(),
        "uptime_seconds": int((datetime.now(UTC) - _STARTED).total_seconds()),
    }


async def collect_logs(ctx: JobContext) -> Outcome:
    lines = int(ctx.job.params.get("lines", 200))
    max_bytes = int(ctx.job.params.get("max_bytes", 16384))
    ctx.output = log_tail().tail(lines, max_bytes)
    return {"lines": ctx.output.count("\n") + 1 if ctx.output else 0,
            "bytes": len(ctx.output.encode("utf-8"))}  # fmt: skip


async def rotate_credentials(ctx: JobContext) -> Outcome:
    """A new key and certificate (the renewal the agent does by itself), then a token bound to
    the new certificate."""
    await ctx.step("new_certificate")
    try:
        # No report between the two: until the refresh, the token is bound to the old
        # certificate, which the connection no longer presents.
        linked = await ctx.upkeep.renew()
        await ctx.upkeep.refresh()
    except AgentError as error:
        raise JobFailed(f"rotation failed: {error}") from None
    await ctx.step("token_bound", serial=linked.serial)
    return {"serial": linked.serial, "not_after": linked.not_after.isoformat()}


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayTarget:
    """Where the gateway listens for each instrument (`name` -> (host, port)) and the CA that
    issued its server certificate."""

    instruments: dict[str, tuple[str, int]]
    ca: Path


# A reply longer than this is not a status answer.
MAX_REPLY = 4096
GATEWAY_TIMEOUT = 15.0


async def instrument_action(ctx: JobContext) -> Outcome:
    target = ctx.gateway
    if not isinstance(target, GatewayTarget):
        raise JobRejected("no gateway is configured on this device")
    name = str(ctx.job.params["instrument"])
    address = target.instruments.get(name)
    if address is None:
        raise JobRejected(f"instrument {name!r} is not configured on this device")
    command = INSTRUMENT_QUERIES[str(ctx.job.params["action"])]
    context = ssl.create_default_context(cafile=str(target.ca))
    context.load_cert_chain(str(ctx.store.path(DEVICE)))
    await ctx.step("connect", instrument=name)
    try:
        reply = await asyncio.wait_for(_query(address, name, context, command), GATEWAY_TIMEOUT)
    except (OSError, ssl.SSLError, TimeoutError, EOFError) as error:
        raise JobFailed(f"gateway for {name}: {type(error).__name__}: {error}") from None
    return {"instrument": name, "command": command, "reply": reply[:256]}


async def _query(address: tuple[str, int], name: str, context: ssl.SSLContext, command: str) -> str:
    """On the instrument's line protocol: wait for READy, ask for Observer (the level of a
    read-only query, never more), then send the query and read the line that answers it."""
    reader, writer = await asyncio.open_connection(
        address[0], address[1], ssl=context, server_hostname=name
    )
    try:
        greeting = await reader.readline()
        if not greeting.startswith(b"READy"):
            raise EOFError(f"no READy from the gateway: {greeting[:80]!r}")
        await _ask(reader, writer, 1, "ACC Observer")
        return await _ask(reader, writer, 2, command)
    finally:
        writer.close()


async def _ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: int, command: str
) -> str:
    writer.write(f"{tag} {command}\n".encode("ascii"))
    await writer.drain()
    for _ in range(64):  # MESSage lines may come first; a bounded number of them
        line = await reader.readline()
        if not line:
            raise EOFError("the gateway closed the connection")
        if len(line) > MAX_REPLY:
            raise EOFError("reply too long")
        text = line.decode("utf-8", errors="replace").strip()
        if text.startswith(f"OK {tag}"):
            return text[len(f"OK {tag}") :].strip()
        if text.startswith(f"ERRor {tag}"):
            raise JobFailedReply(text[:200])
    raise EOFError(f"no answer to {command!r}")


class JobFailedReply(EOFError):
    """The gateway or instrument answered the query with an error."""
