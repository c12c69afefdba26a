"""Checking a job handed out by the server, before anything of it runs.

1. The signature: a compact JWS verified with the *jobs* keys only, read from the server's JWKS
   (fetched over the server CA pinned at linking; entries with `use` labgate-jobs). A job signed
   with a token key names a kid this set does not hold; an unsigned one (`alg` none) fails
   before any key is looked at. The set is fetched again when a job names an unknown kid (a
   rotation), at most once a minute.
2. The binding: `aud` and `sub` are this device, `exp` (not_after) is in the future.
3. Not a replay: a (job id, attempt) this device already finished is not run again (the last
   1000 are kept in `DIR/jobs-done.json`).
4. The type is one this device knows by its exact name, and the parameters fit the device's own
   copy of its schema (labgate.agent.jobs.registry).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from labgate.agent.errors import AgentError
from labgate.agent.jobs.types import Job, JobRejected
from labgate.agent.store import Store
from labgate.auth.errors import AuthError, TokenError
from labgate.auth.jobdocument import JOBS_KEY_USE, verify_job
from labgate.auth.keyring import PublicKeySet, b64url_decode
from labgate.pki.atomic import PUBLIC, write_atomic

DONE_FILE = "jobs-done.json"
MAX_DONE = 1000
REFETCH_SECONDS = 60.0

Fetch = Callable[[], Awaitable[dict[str, Any]]]


class KeysNotReady(AgentError):
    """The job names a key the device has not fetched yet and may not fetch again so soon: the
    job is left for the next poll, neither run nor refused."""


class JobsKeys:
    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._keys: PublicKeySet | None = None
        self._fetched = -REFETCH_SECONDS
        self._fetched_now = False

    async def for_document(self, document: str) -> PublicKeySet:
        kid = _kid(document)
        stale = self._keys is None or (kid is not None and kid not in self._keys.keys)
        self._fetched_now = False
        if stale and time.monotonic() - self._fetched >= REFETCH_SECONDS:
            self._fetched = time.monotonic()
            self._fetched_now = True
            try:
                self._keys = PublicKeySet.from_jwks(await self._fetch(), use=JOBS_KEY_USE)
            except AuthError as error:
                raise AgentError(f"the server's JWKS cannot be read: {error}") from None
        if self._keys is None:
            raise KeysNotReady("no jobs keys yet (the server's JWKS could not be fetched)")
        if stale and kid is not None and kid not in self._keys.keys and not self._fetched_now:
            raise KeysNotReady(f"job names key {kid!r}; the JWKS is fetched again within a minute")
        return self._keys


def _kid(document: str) -> str | None:
    try:
        header = json.loads(b64url_decode(document.split(".", 1)[0]))
    except (ValueError, UnicodeDecodeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


class DoneJobs:
    """The (job id, attempt) pairs this device finished, so a replayed job is not run twice."""

    def __init__(self, store: Store) -> None:
        self.path = store.path(DONE_FILE)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = data.get("done", []) if isinstance(data, dict) else []
        except (FileNotFoundError, ValueError):
            entries = []
        self._done = [f"{e}" for e in entries if isinstance(e, str)][-MAX_DONE:]

    def __contains__(self, job: tuple[str, int]) -> bool:
        return f"{job[0]}#{job[1]}" in self._done

    def add(self, job_id: str, attempt: int) -> None:
        key = f"{job_id}#{attempt}"
        if key in self._done:
            return
        self._done = [*self._done, key][-MAX_DONE:]
        text = json.dumps({"done": self._done}) + "\n"
        write_atomic(self.path, text.encode("utf-8"), mode=PUBLIC)


def verify(
    document: str, keys: PublicKeySet, *, device_id: str, now: datetime, done: DoneJobs
) -> Job:
    """The checked job; JobRejected naming why not (the poller reports it as REJECTED)."""
    try:
        claims = verify_job(document, keys, device_id=device_id, now=now)
    except TokenError as error:
        raise JobRejected(f"job document refused ({type(error).__name__}): {error}") from None
    if (claims.job_id, claims.attempt) in done:
        raise JobRejected(f"job {claims.job_id} attempt {claims.attempt} already ran here")
    return Job(
        job_id=claims.job_id,
        device_id=claims.device_id,
        type=claims.type,
        attempt=claims.attempt,
        params=claims.params,
        not_after=claims.not_after,
    )
