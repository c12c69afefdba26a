"""The job loop of a linked agent: ask for the next job at the server's interval (with jitter),
check it, run it if this device knows it, and report each step and the end.

    next -> none: wait poll_seconds * [0.8, 1.2]
         -> a job: check (labgate.agent.jobs.document, registry)
                   refused: report REJECTED with the reason
                   QUEUED or IN_PROGRESS: report IN_PROGRESS, run the handler; each ctx.step
                   reports again and learns of a cancel; the end: SUCCEEDED | FAILED |
                   REJECTED | CANCELED
                   CANCELING: report CANCELED at once

Every report carries the version the agent last saw. A 409 `stale_version` (a cancel moved the
job meanwhile) is answered by reading the job again; 409 `job_over` means the server has already
ended it (a forced cancel, a timeout): the agent stops and records the job as done.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from labgate.agent.controlclient import ControlClient
from labgate.agent.errors import AgentError, ServerAway, ServerRefused
from labgate.agent.jobs import registry
from labgate.agent.jobs.document import DoneJobs, JobsKeys, KeysNotReady, verify
from labgate.agent.jobs.types import (
    MAX_OUTPUT,
    Detail,
    Job,
    JobCanceled,
    JobContext,
    JobFailed,
    JobRejected,
    JobType,
    bounded,
)
from labgate.agent.reasons import Reason, event
from labgate.agent.store import Store
from labgate.agent.upkeep import Upkeep
from labgate.pki.renewal import Backoff

JITTER = 0.2
# The agent never polls more often than this, whatever a server says.
MIN_POLL_SECONDS = 1.0


class JobOver(AgentError):
    """The server ended the job already; nothing more to report."""


class JobPoller:
    def __init__(
        self,
        store: Store,
        url: str,
        upkeep: Upkeep,
        *,
        types: Mapping[str, JobType] | None = None,
        gateway: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.url = url
        self.upkeep = upkeep
        self.types = types if types is not None else registry.builtin_types()
        self.gateway = gateway
        self.rng = rng or random.Random()  # noqa: S311 (timing jitter)
        self.backoff = Backoff(base=2.0, cap=300.0, rng=self.rng)
        self.keys = JobsKeys(self._jwks)
        self.done = DoneJobs(store)

    @property
    def device_id(self) -> str:
        return self.upkeep.linked.device_id

    def _client(self) -> ControlClient:
        return self.upkeep.client(self.store.tokens().access_token)

    async def _jwks(self) -> dict[str, Any]:
        async with self.upkeep.client(None) as client:
            _, body = await client.call("GET", "/.well-known/jwks.json")
        if not isinstance(body, dict):
            raise AgentError("the server's JWKS is not a JSON object")
        return body

    async def run_forever(self) -> None:
        while True:
            try:
                interval = await self.poll_once()
                self.backoff.reset()
                wait = max(MIN_POLL_SECONDS, interval * self.rng.uniform(1 - JITTER, 1 + JITTER))
            except AgentError as failure:  # the server away or refusing, an answer unreadable
                wait = self.backoff.next()
                away = isinstance(failure, ServerAway)
                reason = Reason.SERVER_AWAY if away else Reason.SERVER_REFUSED
                event(reason, f"jobs: {failure}; retry in {wait:.0f} s")
            await asyncio.sleep(wait)

    async def _next(self) -> tuple[dict[str, Any] | None, float]:
        async with self._client() as client:
            _, body = await client.call("GET", f"/api/v1/devices/{self.device_id}/jobs/next")
        if not isinstance(body, dict):
            raise AgentError("the server's jobs/next answer is not a JSON object")
        job = body.get("job")
        poll = body.get("poll_seconds")
        interval = float(poll) if isinstance(poll, int) and poll > 0 else 60.0
        return (job if isinstance(job, dict) else None), interval

    async def poll_once(self) -> float:
        """One poll, and the job it brings run to its end; the interval the server asked for."""
        envelope, interval = await self._next()
        if envelope is not None:
            await self.handle(envelope)
        return interval

    async def handle(self, envelope: dict[str, Any]) -> None:
        run = Run(self, envelope)
        try:
            job, job_type = await self._check(envelope)
        except KeysNotReady as waiting:
            event(Reason.JOB_REFUSED, f"job {run.job_id} left for later: {waiting}")
            return
        except JobRejected as refusal:
            event(Reason.JOB_REFUSED, f"job {run.job_id}: {refusal}")
            await run.finish("REJECTED", {"reason": str(refusal)})
            return
        try:
            if run.state == "CANCELING":
                await run.finish("CANCELED", {"reason": "canceled before it started"})
                return
            await run.report(
                "IN_PROGRESS", {"step": "start" if run.state == "QUEUED" else "resume"}
            )
            event(Reason.JOB_STARTED, f"job {job.job_id} ({job.type}) attempt {job.attempt}")
            await run.execute(job, job_type)
        except JobOver as over:
            event(Reason.JOB_DONE, f"job {run.job_id}: {over}")
            self.done.add(run.job_id, run.attempt)

    async def _check(self, envelope: dict[str, Any]) -> tuple[Job, JobType]:
        document = envelope.get("document")
        if not isinstance(document, str):
            raise JobRejected("the job carries no signed document")
        keys = await self.keys.for_document(document)
        job = verify(
            document, keys, device_id=self.device_id, now=datetime.now(UTC), done=self.done
        )
        if job.job_id != envelope.get("job_id"):
            raise JobRejected(f"the signed job is {job.job_id}, not {envelope.get('job_id')!r}")
        return job, registry.accept(self.types, job.type, job.params)


class Run:
    """One job's reports, each with the version last seen."""

    def __init__(self, poller: JobPoller, envelope: dict[str, Any]) -> None:
        self.poller = poller
        self.job_id = str(envelope.get("job_id", ""))[:40]
        self.version = int(envelope.get("version") or 1)
        self.state = str(envelope.get("state", "QUEUED"))
        self.attempt = int(envelope.get("attempt") or 1)

    async def execute(self, job: Job, job_type: JobType) -> None:
        context = JobContext(
            job=job,
            store=self.poller.store,
            server_url=self.poller.url,
            upkeep=self.poller.upkeep,
            reporter=self.step,
            gateway=self.poller.gateway,
        )
        try:
            outcome = dict(await job_type.handler(context))
        except JobCanceled as canceled:
            event(Reason.JOB_CANCELED, str(canceled))
            await self.finish("CANCELED", {"step": context.steps[-1] if context.steps else ""})
        except JobRejected as refusal:
            await self.finish("REJECTED", {"reason": str(refusal)})
        except (JobFailed, AgentError) as failure:
            await self.finish("FAILED", {"reason": str(failure)})
        else:
            await self.finish("SUCCEEDED", outcome, output=context.output)
        self.poller.done.add(job.job_id, job.attempt)
        event(Reason.JOB_DONE, f"job {job.job_id} ({job.type}) is {self.state}")

    async def step(self, details: dict[str, Detail]) -> bool:
        """A step report; True when the server asks to cancel."""
        await self.report("IN_PROGRESS", details)
        return self.state == "CANCELING"

    async def finish(
        self, status: str, details: Mapping[str, Any], *, output: str | None = None
    ) -> None:
        try:
            await self.report(status, details, output=output)
        except JobOver:
            return
        except ServerRefused as refusal:
            event(Reason.SERVER_REFUSED, f"job {self.job_id}: final report refused: {refusal}")

    async def report(
        self, status: str, details: Mapping[str, Any], *, output: str | None = None
    ) -> None:
        body: dict[str, Any] = {
            "status": status,
            "expected_version": self.version,
            "status_details": bounded(details),
        }
        if output is not None:
            body["output"] = output[:MAX_OUTPUT]
        path = f"/api/v1/devices/{self.poller.device_id}/jobs/{self.job_id}/report"
        for _ in range(3):
            try:
                async with self.poller._client() as client:
                    _, answer = await client.call("POST", path, body)
            except ServerRefused as refusal:
                if refusal.code == "job_over":
                    raise JobOver(f"the server ended it already ({refusal})") from None
                if refusal.code == "stale_version" and await self._reread():
                    body["expected_version"] = self.version
                    if self.state == "CANCELING" and status == "IN_PROGRESS":
                        return  # the caller sees the cancel; no step report is needed
                    continue
                raise
            self.version = int(answer.get("version", self.version + 1))
            self.state = str(answer.get("state", status))
            return
        raise AgentError(f"job {self.job_id}: the version kept moving; giving up this report")

    async def _reread(self) -> bool:
        """The job's current version and state from jobs/next; False if it is not ours now."""
        envelope, _ = await self.poller._next()
        if envelope is None or envelope.get("job_id") != self.job_id:
            raise JobOver("the server no longer hands this job out")
        self.version = int(envelope.get("version") or self.version)
        self.state = str(envelope.get("state", self.state))
        return True
