"""Stable reason codes: one for every state change and every refusal, in the log and status.

People read the message; scripts and the server's audit log match the code, so a code, once
published, keeps its meaning.
"""

from __future__ import annotations

import logging
from enum import StrEnum

log = logging.getLogger("labgate.agent")


class Reason(StrEnum):
    # state changes
    STARTED = "started"
    ANNOUNCING = "announcing"
    SECRET_HANDED_OUT = "secret_handed_out"  # noqa: S105 (a reason code, not a secret)
    CODE_ISSUED = "code_issued"
    VERIFICATION_RECEIVED = "verification_received"
    LINKED = "linked"
    RENEWED = "renewed"
    REFRESHED = "refreshed"
    UNLINKED = "unlinked"
    DISCOVERY_ENDED = "discovery_ended"
    # refusals and failures
    NOT_LOCAL = "not_local"
    INSTANCE_MISMATCH = "instance_mismatch"
    WINDOW_CLOSED = "window_closed"
    SECRET_MISMATCH = "secret_mismatch"  # noqa: S105 (a reason code)
    VERIFICATION_EXPIRED = "verification_expired"
    VERIFICATION_USED = "verification_used"
    ALREADY_LINKED = "already_linked"
    THROTTLED = "throttled"
    ACCESS_DENIED = "access_denied"
    CODE_EXPIRED = "code_expired"
    SLOW_DOWN = "slow_down"
    SERVER_AWAY = "server_away"
    SERVER_REFUSED = "server_refused"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TOO_LARGE = "request_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    RENEWAL_FAILED = "renewal_failed"
    REFRESH_FAILED = "refresh_failed"
    # jobs (labgate.agent.jobs)
    JOB_STARTED = "job_started"
    JOB_DONE = "job_done"
    JOB_REFUSED = "job_refused"
    JOB_CANCELED = "job_canceled"


def event(reason: Reason, message: str, *, level: int = logging.INFO) -> None:
    """One log line for people, led by its reason code: `reason=not_local peer 10.1.2.3 ...`."""
    log.log(level, "reason=%s %s", reason.value, message)
