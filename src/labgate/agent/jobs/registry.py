"""The job types this device runs: its list is the last word.

A job whose type is not here by its exact name, or whose parameters do not fit this device's own
copy of the type's schema, is refused (REJECTED with the reason) whatever the server says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from labgate.agent.jobs import builtin, install
from labgate.agent.jobs.types import JobRejected, JobType


def builtin_types() -> dict[str, JobType]:
    types = (
        JobType(name="report_status", schema=builtin.REPORT_STATUS_SCHEMA,
                handler=builtin.report_status),
        JobType(name="collect_logs", schema=builtin.COLLECT_LOGS_SCHEMA,
                handler=builtin.collect_logs),
        JobType(name="rotate_credentials", schema=builtin.ROTATE_CREDENTIALS_SCHEMA,
                handler=builtin.rotate_credentials),
        JobType(name="install_release", schema=install.INSTALL_RELEASE_SCHEMA,
                handler=install.install_release),
        JobType(name="instrument_action", schema=builtin.INSTRUMENT_ACTION_SCHEMA,
                handler=builtin.instrument_action),
    )  # fmt: skip
    return {t.name: t for t in types}


def accept(types: Mapping[str, JobType], name: str, params: Mapping[str, Any]) -> JobType:
    """The type if this device knows it and the parameters fit; JobRejected otherwise."""
    job_type = types.get(name)
    if job_type is None:
        raise JobRejected(f"job type {name[:40]!r} is not one this device runs")
    errors = list(Draft202012Validator(dict(job_type.schema)).iter_errors(dict(params)))
    if errors:
        first = min(errors, key=lambda e: list(e.absolute_path))
        place = "/".join(str(p) for p in first.absolute_path) or "params"
        raise JobRejected(f"{name}: {place}: {first.message[:200]}")
    return job_type
