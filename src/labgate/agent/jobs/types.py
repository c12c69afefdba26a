"""What a job handler is given and may raise.

A handler is `async def handler(ctx: JobContext) -> Outcome`. Between its steps it calls
`await ctx.step("name", key=value, ...)`, which reports the step (IN_PROGRESS with the details)
and raises JobCanceled when the server asked to cancel; the handler lets that propagate
(cleaning up in `finally`) and the poller acknowledges with CANCELED. It raises JobRejected for a
job it will not run on this device and JobFailed for one that did not work; what it returns are
the status details of success. Details are bounded like the server's: at most 16 keys, each
`[a-z][a-z0-9_]{0,63}`, values strings of at most 256 characters, integers or booleans.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from labgate.agent.errors import AgentError

if TYPE_CHECKING:
    from labgate.agent.controlclient import ControlClient
    from labgate.agent.store import Store
    from labgate.agent.upkeep import Upkeep

Detail = str | int | bool
Outcome = Mapping[str, Detail]
MAX_DETAIL_KEYS = 16
MAX_DETAIL_VALUE = 256
# The longest output (collected logs) a job may send with its final report.
MAX_OUTPUT = 65536
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")


class JobRejected(AgentError):
    """This device will not run the job (unknown type, parameters outside its schema, ...)."""


class JobFailed(AgentError):
    """The job ran and did not work."""


class JobCanceled(AgentError):
    """The server asked to cancel; raised by `JobContext.step` between steps."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A job whose signature, binding, deadline and parameters were checked."""

    job_id: str
    device_id: str
    type: str
    attempt: int
    params: Mapping[str, Any]
    not_after: datetime


class StepReporter(Protocol):
    async def __call__(self, details: dict[str, Detail]) -> bool:
        """Report IN_PROGRESS with `details`; True when the server asks to cancel."""
        ...


@dataclass(kw_only=True)
class JobContext:
    """One run of one job. `output` (at most MAX_OUTPUT characters) goes with the final report."""

    job: Job
    store: Store
    server_url: str
    upkeep: Upkeep
    reporter: StepReporter
    gateway: Any = None  # labgate.agent.jobs.builtin.GatewayTarget when configured
    output: str | None = None
    steps: list[str] = field(default_factory=list)

    @property
    def device_id(self) -> str:
        return self.job.device_id

    def tls_context(self) -> ssl.SSLContext:
        """The pinned server CA, presenting the device certificate (mutual TLS)."""
        from labgate.agent.controlclient import tls_context
        from labgate.agent.store import DEVICE, SERVER_CA

        return tls_context(self.store.path(SERVER_CA), self.store.path(DEVICE))

    def client(self) -> ControlClient:
        """The control server over mutual TLS with the device's current bound token."""
        return self.upkeep.client(self.store.tokens().access_token)

    async def step(self, name: str, **details: Detail) -> None:
        """Report step `name`; raises JobCanceled if the server asked to cancel."""
        self.steps.append(name)
        if await self.reporter(bounded({"step": name, **details})):
            raise JobCanceled(f"job {self.job.job_id} canceled by the server at step {name!r}")


def bounded(details: Mapping[str, Any]) -> dict[str, Detail]:
    """Details cut to the server's bounds (a handler's long message is cut, not refused)."""
    checked: dict[str, Detail] = {}
    for key, value in list(details.items())[:MAX_DETAIL_KEYS]:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            continue
        if isinstance(value, bool | int):
            checked[key] = value
        else:  # the server refuses control characters in any text: a line break becomes a space
            text = "".join(c if c.isprintable() else " " for c in str(value))
            checked[key] = text[:MAX_DETAIL_VALUE]
    return checked


Handler = Callable[[JobContext], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobType:
    name: str
    schema: Mapping[str, Any]
    handler: Handler
