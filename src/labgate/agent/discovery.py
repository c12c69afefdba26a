"""The local-network flow from the device: announce, wait for a verification, check its proof.

Each round is one announcement (the window counts them) followed by a long poll for a
verification that lasts the announcement interval, so the poll is also the wait between
announcements. A verification's proof is checked once: a wrong one is refused to the server and
ends discovery for this start, a right one is answered with a CSR for the device id it names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from labgate.agent import enrolment
from labgate.agent.controlclient import ControlClient
from labgate.agent.errors import ServerAway, ServerRefused
from labgate.agent.reasons import Reason, event
from labgate.agent.secret import LocalSecret
from labgate.agent.store import Linked, Store
from labgate.agent.window import ANNOUNCE_INTERVAL_SECONDS, Window
from labgate.pki import keypair
from labgate.pki.renewal import Backoff

# The server holds a long poll at most 25 s.
MAX_WAIT = 25

# Refusals that end discovery for this start, by the server's code.
_ENDING = {
    "window_closed": Reason.WINDOW_CLOSED,
    "secret_mismatch": Reason.SECRET_MISMATCH,
    "already_linked": Reason.ALREADY_LINKED,
    "instance_mismatch": Reason.INSTANCE_MISMATCH,
}


@dataclass(slots=True, kw_only=True)
class Presence:
    instance_id: str
    local_address: str
    hostname: str
    model: str
    serial: str
    interval: float = ANNOUNCE_INTERVAL_SECONDS
    announce_token: str | None = None


async def discover(
    client: ControlClient, store: Store, presence: Presence, secret: LocalSecret, window: Window
) -> Linked | None:
    """Announce until linked (the Linked state) or until the window ends (None)."""
    backoff = Backoff(base=presence.interval, cap=60.0)
    while window.is_open:
        window.count()
        try:
            await _announce(client, presence)
            backoff.reset()
            found = await _poll(client, presence)
            if found is not None:
                return await _verify(client, store, presence, secret, window, found)
        except ServerRefused as refusal:
            reason = _ENDING.get(refusal.code)
            if reason is not None:
                window.close(reason)
                event(reason, f"discovery ended by the server: {refusal}")
                break
            if refusal.code == "verification_expired":
                event(
                    Reason.VERIFICATION_EXPIRED, "the verification expired before it was answered"
                )
                continue
            event(
                Reason.THROTTLED if refusal.status == 429 else Reason.SERVER_REFUSED, str(refusal)
            )
            await asyncio.sleep(backoff.next())
        except ServerAway as away:
            event(Reason.SERVER_AWAY, str(away))
            await asyncio.sleep(backoff.next())
    if window.ended is Reason.WINDOW_CLOSED:
        event(Reason.WINDOW_CLOSED, f"discovery window over after {window.made} announcements")
    return None


async def _announce(client: ControlClient, presence: Presence) -> None:
    body = {
        "instance_id": presence.instance_id,
        "local_address": presence.local_address,
        "hostname": presence.hostname,
        "model": presence.model,
        "serial": presence.serial,
        "announce_token": presence.announce_token,
    }
    _, answer = await client.call("POST", "/api/v1/discovery/announce", body)
    if isinstance(answer, dict):
        if presence.announce_token is None and isinstance(answer.get("announce_token"), str):
            presence.announce_token = answer["announce_token"]
            event(
                Reason.ANNOUNCING,
                f"announcing {presence.instance_id} from {presence.local_address}",
            )
        interval = answer.get("interval")
        if isinstance(interval, int | float) and 1 <= interval <= 60:
            presence.interval = max(presence.interval, float(interval))


async def _poll(client: ControlClient, presence: Presence) -> dict[str, Any] | None:
    wait = int(min(MAX_WAIT, presence.interval))
    status, answer = await client.call(
        "POST",
        f"/api/v1/discovery/{presence.instance_id}/verification",
        {"announce_token": presence.announce_token, "wait_seconds": wait},
        timeout=wait + 15.0,
    )
    if status == 204 or not isinstance(answer, dict):
        return None
    return answer


async def _verify(
    client: ControlClient,
    store: Store,
    presence: Presence,
    secret: LocalSecret,
    window: Window,
    verification: dict[str, Any],
) -> Linked | None:
    verification_id = str(verification.get("verification_id", ""))
    device_id = str(verification.get("device_id", ""))
    proof = str(verification.get("proof", ""))
    linked_by = str(verification.get("linked_by", "?"))
    event(Reason.VERIFICATION_RECEIVED, f"verification {verification_id} from {linked_by}")
    base = f"/api/v1/discovery/{presence.instance_id}"
    if not secret.proves(
        instance_id=presence.instance_id,
        verification_id=verification_id,
        device_id=device_id,
        proof=proof,
    ):
        # One try: whoever queued this did not have the secret; discovery ends for this start.
        window.close(Reason.SECRET_MISMATCH)
        event(
            Reason.SECRET_MISMATCH, f"verification {verification_id}: wrong proof; discovery ends"
        )
        await client.call(
            "POST",
            f"{base}/refuse",
            {
                "announce_token": presence.announce_token,
                "verification_id": verification_id,
                "reason": "secret_mismatch",
            },
        )
        return None
    key = keypair.new_key()
    _, answer = await client.call(
        "POST",
        f"{base}/complete",
        {
            "announce_token": presence.announce_token,
            "verification_id": verification_id,
            "csr_pem": keypair.build_csr(key, device_id),
        },
    )
    linked = enrolment.accept(store, answer, key, device_id)
    window.close(Reason.LINKED)
    return linked
