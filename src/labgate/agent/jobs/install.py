"""`install_release`: install a signed release named by target path, length and SHA-256.

The parameters' schema is this device's own copy (the server keeps the same one in
labgate.control.jobtypes; a test checks they agree). Until the release verification and slots
are wired in here, a device refuses the job rather than pretend to run it.
"""

from __future__ import annotations

from labgate.agent.jobs.types import JobContext, JobRejected, Outcome

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
    raise JobRejected("install_release is not available on this device")
