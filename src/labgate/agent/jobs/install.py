"""`install_release`: install a signed release named by target path, length and SHA-256.

The parameters' schema is this device's own copy (the server keeps the same one in
labgate.control.jobtypes; a test checks they agree). The work is labgate.agent.installation's:
TUF verification against the device's installed root, the binding to what the job names and the
device's model and floor, the download, the other slot, the health check, commit or roll-back.
Each blocking step runs in a worker thread, and a step report between them may bring a cancel:
one that arrives after the new slot was activated rolls it back before the job ends CANCELED.
A refusal (wrong model, other bytes than the job names, older than the floor, no release set
up) is REJECTED; a failure (verification, download, health check after its roll-back) FAILED.
Both carry the reason code before the message (`wrong-model: release 2.0 is for qs7, ...`).
"""

from __future__ import annotations

import asyncio

from labgate.agent.installation import (
    InstallFailed,
    InstallRefused,
    Online,
    ReleaseConfig,
    ReleaseInstall,
)
from labgate.agent.jobs.types import JobCanceled, JobContext, JobFailed, JobRejected, Outcome
from labgate.releases.verification import Binding

INSTALL_RELEASE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target_path", "length", "sha256"],
    "properties": {
        "target_path": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$",
        },
        "length": {"type": "integer", "minimum": 1, "maximum": 4 * 1024**3},
        "sha256": {"type": "string", "maxLength": 64, "pattern": "^[0-9a-f]{64}$"},
    },
}


async def install_release(ctx: JobContext) -> Outcome:
    params = ctx.job.params
    binding = Binding(
        target_path=str(params["target_path"]),
        length=int(params["length"]),
        sha256=str(params["sha256"]),
    )
    try:
        install = ReleaseInstall(
            data_dir=ctx.store.directory,
            config=ReleaseConfig.load(ctx.store.directory),
            source=Online(server_url=ctx.server_url, context=ctx.tls_context()),
            binding=binding,
        )
        with install.exclusive():
            return await _steps(ctx, install)
    except InstallRefused as refusal:
        raise JobRejected(f"{refusal.reason}: {refusal}") from None
    except InstallFailed as failure:
        raise JobFailed(f"{failure.reason}: {failure}") from None


async def _steps(ctx: JobContext, install: ReleaseInstall) -> Outcome:
    verified = await asyncio.to_thread(install.verify)
    await ctx.step("verified", version=str(verified.release.version))
    await asyncio.to_thread(install.fetch)
    await ctx.step("downloaded", bytes=verified.length, received=install.tally.received)
    slot = await asyncio.to_thread(install.install)
    try:
        await ctx.step("installed", slot=slot)
        health = await asyncio.to_thread(install.check)
        await ctx.step("health", healthy=health.healthy)
    except JobCanceled:
        install.roll_back("canceled by the server")
        raise
    if not health.healthy:
        outcome = install.roll_back(health.reason)
        raise JobFailed(f"health_failed: rolled back to slot {outcome.slot}: {health.reason}")
    return install.commit().details()
