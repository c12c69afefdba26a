"""A linked device keeps itself linked: token refresh and certificate renewal, with backoff.

Both happen at 2/3 of their lifetime with jitter. A renewal is a new key and a CSR sent with the
current certificate and access token; the new key, certificate and chain replace the old ones in
one rename, and the next refresh over the new certificate binds the token family to it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from labgate.agent import enrolment
from labgate.agent.controlclient import ControlClient, tls_context
from labgate.agent.errors import AgentError, ServerAway, ServerRefused
from labgate.agent.reasons import Reason, event
from labgate.agent.store import DEVICE, SERVER_CA, Linked, Store, Tokens
from labgate.pki import keypair
from labgate.pki.renewal import Backoff, refresh_due, renewal_due, seconds_until


class Upkeep:
    def __init__(
        self,
        store: Store,
        url: str,
        linked: Linked,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        # `sleep` is this loop's own: a test can count its waits without touching the
        # event loop's other tasks (an in-process server's among them).
        self.sleep = sleep
        self.store = store
        self.url = url
        self.linked = linked
        self.rng = rng or random.Random()  # noqa: S311 (timing jitter)
        self.backoff = Backoff(base=2.0, cap=300.0, rng=self.rng)

    def client(self, token: str | None) -> ControlClient:
        context = tls_context(self.store.path(SERVER_CA), self.store.path(DEVICE))
        return ControlClient(self.url, context, token=token)

    async def run_forever(self) -> None:
        renew_at = renewal_due(self.linked.not_before, self.linked.not_after, rng=self.rng)
        tokens = self.store.tokens()
        refresh_at = refresh_due(tokens.issued_at, tokens.expires_at, rng=self.rng)
        while True:
            now = datetime.now(UTC)
            due = min(renew_at, refresh_at)
            await self.sleep(min(seconds_until(due, now), 3600.0))
            now = datetime.now(UTC)
            try:
                if now >= refresh_at or (now >= renew_at and self.store.tokens().expires_at <= now):
                    tokens = await self.refresh()
                    refresh_at = refresh_due(tokens.issued_at, tokens.expires_at, rng=self.rng)
                if now >= renew_at:
                    await self.renew()
                    renew_at = renewal_due(
                        self.linked.not_before, self.linked.not_after, rng=self.rng
                    )
                    tokens = await self.refresh()
                    refresh_at = refresh_due(tokens.issued_at, tokens.expires_at, rng=self.rng)
                self.backoff.reset()
            except (ServerAway, ServerRefused) as failure:
                wait = self.backoff.next()
                reason = (
                    Reason.SERVER_AWAY if isinstance(failure, ServerAway) else Reason.SERVER_REFUSED
                )
                event(reason, f"{failure}; retry in {wait:.0f} s")
                await self.sleep(wait)

    async def refresh(self) -> Tokens:
        tokens = self.store.tokens()
        async with self.client(None) as client:
            try:
                _, body = await client.call(
                    "POST", "/api/v1/auth/refresh", {"refresh_token": tokens.refresh_token}
                )
            except ServerRefused as refusal:
                event(Reason.REFRESH_FAILED, str(refusal))
                raise
        fresh = enrolment.tokens_from(body, datetime.now(UTC))
        self.store.save_tokens(fresh)
        event(
            Reason.REFRESHED, f"tokens refreshed; access until {fresh.expires_at:%Y-%m-%dT%H:%MZ}"
        )
        return fresh

    async def renew(self) -> Linked:
        key = keypair.new_key()
        csr = keypair.build_csr(key, self.linked.device_id)
        async with self.client(self.store.tokens().access_token) as client:
            try:
                _, body = await client.call("POST", "/api/v1/certificates", {"csr_pem": csr})
            except ServerRefused as refusal:
                event(Reason.RENEWAL_FAILED, str(refusal))
                raise
        try:
            certificate_pem = str(body["certificate_pem"])
            chain_pem = str(body.get("chain_pem") or "")
        except (KeyError, TypeError):
            raise AgentError("the server's certificate answer lacks certificate_pem") from None
        certificate, serial = keypair.validity(certificate_pem)
        if not enrolment.same_key(certificate.public_key(), key):
            raise AgentError("the renewed certificate does not carry the new key")
        self.store.save_device(keypair.combined_pem(key, certificate_pem, chain_pem))
        self.linked = Linked(
            device_id=self.linked.device_id,
            identity=self.linked.identity,
            serial=serial,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            linked_at=self.linked.linked_at,
        )
        self.store.save_state(self.linked)
        event(Reason.RENEWED, f"certificate {serial} until {self.linked.not_after:%Y-%m-%dT%H:%MZ}")
        return self.linked


async def unlink(store: Store) -> str:
    """Tell the server, then forget; the device id unlinked. Server away: nothing is forgotten."""
    linked = store.linked()
    if linked is None:
        raise AgentError(f"{store.directory}: this agent is not linked")
    upkeep = Upkeep(store, store.server_url(), linked)
    for attempt in (1, 2):
        async with upkeep.client(store.tokens().access_token) as client:
            try:
                await client.call("POST", f"/api/v1/devices/{linked.device_id}/unlink", {})
                break
            except ServerRefused as refusal:
                if refusal.status == 401 and attempt == 1:
                    try:  # an access token past its time: refresh once and ask again
                        await upkeep.refresh()
                        continue
                    except ServerRefused:
                        pass
                if refusal.status not in (401, 403, 404, 410):
                    raise
                # The server no longer knows this device or its credentials.
                event(Reason.UNLINKED, f"server says the device is already gone ({refusal.code})")
                break
    store.forget_link()
    event(Reason.UNLINKED, f"device {linked.device_id} unlinked")
    return linked.device_id
