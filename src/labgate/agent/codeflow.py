"""The code flow from the device (RFC 8628): ask for a code, show it, poll with a CSR.

The user code is shown on stderr, in the status file and on the local page; the device code is
kept in memory only. Polls respect the server's `interval` and grow it on `slow_down`; an expired
code is replaced by a new one; a denial ends the flow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from labgate.agent import enrolment
from labgate.agent.controlclient import ControlClient
from labgate.agent.errors import AgentError, ServerAway, ServerRefused
from labgate.agent.reasons import Reason, event
from labgate.agent.store import Linked, Store
from labgate.pki import keypair
from labgate.pki.renewal import Backoff

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True, slots=True, kw_only=True)
class Code:
    user_code: str
    device_id: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int
    device_code: str

    def __repr__(self) -> str:
        return f"Code(user_code={self.user_code!r}, device_id={self.device_id!r}, <hidden>)"


async def request_code(client: ControlClient, description: dict[str, Any]) -> Code:
    _, body = await client.call("POST", "/api/v1/device-codes", description)
    try:
        return Code(
            user_code=str(body["user_code"]),
            device_id=str(body["device_id"]),
            verification_uri=str(body["verification_uri"]),
            verification_uri_complete=str(body.get("verification_uri_complete") or ""),
            expires_in=int(body["expires_in"]),
            interval=int(body["interval"]),
            device_code=str(body["device_code"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise AgentError(f"the server's device-code answer lacks {error}") from None


async def link_by_code(
    client: ControlClient,
    store: Store,
    description: dict[str, Any],
    on_code: Callable[[Code], None],
) -> Linked | None:
    """Linked when approved; None when denied."""
    backoff = Backoff(base=5.0, cap=120.0)
    while True:
        try:
            code = await request_code(client, description)
        except ServerRefused as refusal:
            event(
                Reason.THROTTLED if refusal.status == 429 else Reason.SERVER_REFUSED, str(refusal)
            )
            await asyncio.sleep(backoff.next())
            continue
        except ServerAway as away:
            event(Reason.SERVER_AWAY, str(away))
            await asyncio.sleep(backoff.next())
            continue
        backoff.reset()
        event(
            Reason.CODE_ISSUED,
            f"enter code {code.user_code} at {code.verification_uri} (device {code.device_id}, "
            f"valid {code.expires_in} s)",
        )
        on_code(code)
        outcome = await _poll(client, store, code)
        if outcome is Ended.DENIED:
            return None
        if isinstance(outcome, Linked):
            return outcome


class Ended(Enum):
    DENIED = "denied"
    EXPIRED = "expired"


async def _poll(client: ControlClient, store: Store, code: Code) -> Linked | Ended:
    interval = float(code.interval)
    key = keypair.new_key()
    csr = keypair.build_csr(key, code.device_id)
    backoff = Backoff(base=interval, cap=120.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + code.expires_in + interval
    while loop.time() < deadline:
        await asyncio.sleep(interval)
        try:
            _, body = await client.call(
                "POST",
                "/api/v1/device-codes/token",
                {"grant_type": GRANT, "device_code": code.device_code, "csr_pem": csr},
            )
        except ServerAway as away:
            event(Reason.SERVER_AWAY, str(away))
            await asyncio.sleep(backoff.next())
            continue
        except ServerRefused as refusal:
            if refusal.code == "authorization_pending":
                continue
            if refusal.code == "slow_down":
                interval += 5.0
                event(Reason.SLOW_DOWN, f"server asked to poll every {interval:.0f} s")
                continue
            if refusal.code == "access_denied":
                event(Reason.ACCESS_DENIED, f"code {code.user_code} was denied")
                return Ended.DENIED
            if refusal.code in ("expired_token", "invalid_grant"):
                event(
                    Reason.CODE_EXPIRED,
                    f"code {code.user_code} is over ({refusal.code}); a new one",
                )
                return Ended.EXPIRED
            event(Reason.SERVER_REFUSED, str(refusal))
            await asyncio.sleep(backoff.next())
            continue
        return enrolment.accept(store, body, key, code.device_id)
    event(Reason.CODE_EXPIRED, f"code {code.user_code} is over; a new one")
    return Ended.EXPIRED
