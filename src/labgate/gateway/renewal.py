"""A gateway with a `[control]` table renews its own certificates from the control server: the one
it serves to clients (`gateway.cert`) and the one it presents to the control server
(`[control] cert`, when it is another file).

Each is renewed at 2/3 of its lifetime, moved by the jitter its serial draws
(`labgate.pki.renewal.certificate_due`). A renewal makes a new key on the gateway (of the old
key's type), sends a CSR that keeps the certificate's names (its common name, DNS names, IP
addresses and identity URI) to `POST /api/v1/gateways/{name}/certificates`, authenticated by the
gateway's current control client certificate, checks what comes back (its key is ours, it names
this gateway, it chains to the control server's CA), and writes the key (0600) and then the chain,
each atomically, while holding the gateway's file lock so that a reload never reads half of the
pair. The file watcher then reloads as for any change on disk: sessions stay up, new handshakes
get the new certificate.

A server that is away or refuses is asked again with capped full-jitter backoff (from 1 s up
to `[control] renew_retry_max`), so a certificate is renewed well before it expires even through
an outage of days. Every renewal and failure goes to the audit log (`certificate_renewed`,
`certificate_renewal_failed` with a stable `reason`) and to the log. A gateway whose control
client certificate has expired (down for longer than a third of its life) is told so
(`expired`): no renewal can then be authenticated, and an operator issues a new one.

A certificate that is not one of the control server's CA for this gateway (a customer's own,
installed as `gateway.cert`) is never replaced: clients trusting only the customer's CA would be
cut off. It is warned about from 30 days before its expiry, as a standalone gateway's is.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from labgate.gateway.config import ControlConfig, GatewayConfig
from labgate.gateway.errors import RenewalError
from labgate.gateway.server import EXPIRY_CHECK_SECONDS, Gateway
from labgate.pki import expiry, keypair, keys
from labgate.pki.atomic import PRIVATE, PUBLIC, sync_directory, write_atomic
from labgate.pki.identity import gateway_uri, identity_of
from labgate.pki.renewal import Backoff, certificate_due, seconds_until

log = logging.getLogger("labgate.gateway")

Purpose = Literal["server", "client"]
# The files are read again at least this often: a certificate an operator replaced by hand is
# then renewed by its own schedule.
CHECK_SECONDS = 60.0
FIRST_RETRY_SECONDS = 1.0
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Renewable:
    """A certificate file and its key that the gateway renews, and what it is for."""

    purpose: Purpose
    cert: Path
    key: Path


def renewables(config: GatewayConfig) -> tuple[Renewable, ...]:
    """What this configuration renews: nothing without `[control]`; the served certificate, and
    the control client certificate when it is a file of its own."""
    control = config.control
    if control is None:
        return ()
    found = [Renewable(purpose="server", cert=config.cert, key=config.key)]
    if control.cert is not None and control.cert != config.cert:
        found.append(Renewable(purpose="client", cert=control.cert, key=control.key or config.key))
    return tuple(found)


def is_ours(chain: Sequence[x509.Certificate], control: ControlConfig) -> bool:
    """Whether the leaf names this gateway and chains, through the intermediates sent with it,
    to a root of the control server's CA: only such a certificate may be renewed there."""
    if not chain or identity_of(chain[0]) != gateway_uri(control.gateway_name):
        return False
    try:
        roots = x509.load_pem_x509_certificates(control.server_ca.read_bytes())
    except (OSError, ValueError):
        return False
    current, rest = chain[0], list(chain[1:])
    for _ in range(len(chain) + 1):  # bounded: each step moves one certificate up
        if any(_issued_by(current, root) for root in roots):
            return True
        parent = next((c for c in rest if _issued_by(current, c)), None)
        if parent is None:
            return False
        rest.remove(parent)
        current = parent
    return False


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class Renewals:
    """The schedule of every renewable certificate of one gateway (see the module doc)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._retry_at: dict[Purpose, datetime] = {}
        self._backoff: dict[Purpose, Backoff] = {}
        self._warned_at: float | None = None

    async def run_forever(self) -> None:
        while True:
            now = datetime.now(UTC)
            wake = now + timedelta(seconds=CHECK_SECONDS)
            for renewable in renewables(self.gateway.state.config):
                when = await self.look(renewable, now)
                if when is not None:
                    wake = min(wake, when)
            await asyncio.sleep(max(0.05, seconds_until(wake, datetime.now(UTC))))

    async def look(self, renewable: Renewable, now: datetime) -> datetime | None:
        """Renew `renewable` if due; when to look at it next (None: never, it is not ours)."""
        control = self.gateway.state.config.control
        assert control is not None
        try:
            chain = x509.load_pem_x509_certificates(renewable.cert.read_bytes())
        except (OSError, ValueError) as error:
            self._failed(renewable, "unreadable", f"cannot read {renewable.cert}: {error}", now)
            return self._retry_at[renewable.purpose]
        if not is_ours(chain, control):
            self._warn_customer(renewable)
            return None
        leaf = chain[0]
        due = certificate_due(
            leaf.not_valid_before_utc, leaf.not_valid_after_utc, leaf.serial_number
        )
        due = max(due, self._retry_at.get(renewable.purpose, due))
        if now < due:
            return due
        try:
            renewed = await self.renew(renewable, leaf, control)
        except RenewalError as error:
            self._failed(renewable, error.reason, str(error), now)
            return self._retry_at[renewable.purpose]
        self._retry_at.pop(renewable.purpose, None)
        self._backoff_for(renewable.purpose, control).reset()
        self._record_renewed(renewable, leaf, renewed)
        return certificate_due(
            renewed.not_valid_before_utc, renewed.not_valid_after_utc, renewed.serial_number
        )

    async def renew(
        self, renewable: Renewable, leaf: x509.Certificate, control: ControlConfig
    ) -> x509.Certificate:
        """One renewal: new key, CSR, the server's answer checked, the files written."""
        key = keys.generate(keys.key_type_of(_public_key(leaf)))
        dns, ips = _host_names(leaf)
        csr = keypair.build_csr(
            key, control.gateway_name, dns=dns, ips=ips, uris=[gateway_uri(control.gateway_name)]
        )
        body = await self._ask(control, csr, renewable.purpose)
        chain_pem = str(body.get("chain_pem", "")).encode("ascii", "replace")
        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
        except ValueError:
            raise RenewalError("bad_response", "the answer carries no certificate chain") from None
        if keys.public_der(_public_key(chain[0])) != keys.public_der(key.public_key()):
            raise RenewalError("bad_response", "the certificate returned is not for our new key")
        if not is_ours(chain, control):
            raise RenewalError(
                "bad_response",
                f"the certificate returned does not name {gateway_uri(control.gateway_name)} "
                f"or does not chain to {control.server_ca}",
            )
        try:
            async with self.gateway.files_lock:
                await asyncio.to_thread(
                    _write_pair, renewable, keys.private_pem(key, None), chain_pem
                )
        except OSError as error:
            raise RenewalError("write_failed", f"cannot write {renewable.cert}: {error}") from None
        return chain[0]

    async def _ask(self, control: ControlConfig, csr: str, purpose: Purpose) -> dict[str, Any]:
        config = self.gateway.state.config
        presented = control.cert or config.cert
        try:
            leaf = x509.load_pem_x509_certificate(presented.read_bytes())
        except (OSError, ValueError) as error:
            raise RenewalError("unreadable", f"cannot read {presented}: {error}") from None
        if datetime.now(UTC) >= leaf.not_valid_after_utc:
            # The server would refuse the handshake: only an operator can start it again.
            raise RenewalError(
                "expired",
                f"the client certificate in {presented} expired "
                f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, so no renewal can be "
                "authenticated: issue the gateway a new one (labgate ca issue)",
            )
        context = ssl.create_default_context(cafile=str(control.server_ca))
        try:
            context.load_cert_chain(
                str(control.cert or config.cert), str(control.key or config.key)
            )
        except (OSError, ssl.SSLError) as error:
            raise RenewalError(
                "unreadable", f"cannot load the client certificate: {error}"
            ) from None
        url = f"/api/v1/gateways/{control.gateway_name}/certificates"
        try:
            async with httpx.AsyncClient(
                base_url=control.url, verify=context, timeout=TIMEOUT_SECONDS
            ) as client:
                response = await client.post(url, json={"csr_pem": csr, "purpose": purpose})
        except httpx.HTTPError as error:
            raise RenewalError("unreachable", f"cannot reach {control.url}: {error!r}") from None
        if response.status_code >= 500:
            raise RenewalError("server_error", f"{control.url} answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 201 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else None
            raise RenewalError(
                "refused", f"{control.url} refused the renewal ({response.status_code}): {message}"
            )
        return body

    def _backoff_for(self, purpose: Purpose, control: ControlConfig) -> Backoff:
        backoff = self._backoff.get(purpose)
        if backoff is None or backoff.cap != control.renew_retry_max:
            backoff = self._backoff[purpose] = Backoff(
                base=FIRST_RETRY_SECONDS, cap=max(FIRST_RETRY_SECONDS, control.renew_retry_max)
            )
        return backoff

    def _failed(self, renewable: Renewable, reason: str, detail: str, now: datetime) -> None:
        control = self.gateway.state.config.control
        assert control is not None
        wait = self._backoff_for(renewable.purpose, control).next()
        self._retry_at[renewable.purpose] = now + timedelta(seconds=wait)
        self.gateway.metrics.renewals.labels(renewable.purpose, reason).inc()
        self.gateway.record({"event": "certificate_renewal_failed", "purpose": renewable.purpose,
                             "reason": reason, "detail": detail,
                             "retry_in": round(wait, 1)})  # fmt: skip
        log.warning("certificate_renewal_failed (%s, %s): %s; next attempt in %.1f s",
                    renewable.purpose, reason, detail, wait)  # fmt: skip

    def _record_renewed(
        self, renewable: Renewable, old: x509.Certificate, new: x509.Certificate
    ) -> None:
        self.gateway.metrics.renewals.labels(renewable.purpose, "renewed").inc()
        self.gateway.record({"event": "certificate_renewed", "purpose": renewable.purpose,
                             "serial": format(new.serial_number, "x"),
                             "previous": format(old.serial_number, "x"),
                             "not_after": new.not_valid_after_utc.isoformat()})  # fmt: skip
        log.info("certificate_renewed (%s): serial %x, valid until %s (was %x)",
                 renewable.purpose, new.serial_number,
                 new.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 old.serial_number)  # fmt: skip

    def _warn_customer(self, renewable: Renewable) -> None:
        if (
            self._warned_at is not None
            and time.monotonic() - self._warned_at < EXPIRY_CHECK_SECONDS
        ):
            return
        lines = expiry.expiring(
            expiry.held([(renewable.purpose, renewable.cert)]), now=datetime.now(UTC)
        )
        for line in lines:
            log.warning("%s (not this control server's: it is not renewed automatically)", line)
        if lines:
            self._warned_at = time.monotonic()


async def keep_renewed(gateway: Gateway) -> None:
    """Renew the gateway's certificates for as long as it runs; runs until cancelled."""
    await Renewals(gateway).run_forever()


def _write_pair(renewable: Renewable, key_pem: bytes, chain_pem: bytes) -> None:
    """The key first, so the certificate on disk never lacks its key; one directory flush each."""
    write_atomic(renewable.key, key_pem, mode=PRIVATE, sync_dir=False)
    write_atomic(renewable.cert, chain_pem, mode=PUBLIC, sync_dir=False)
    for directory in {renewable.key.parent, renewable.cert.parent}:
        sync_directory(directory)


def _public_key(certificate: x509.Certificate) -> keys.PublicKey:
    public = certificate.public_key()
    assert isinstance(public, keys.PublicKey)
    return public


def _host_names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (
        list(san.get_values_for_type(x509.DNSName)),
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    )
