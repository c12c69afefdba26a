"""Grant and CRL bundles from the control server: fetched over mutual TLS, verified, applied.

A bundle is a compact JWS signed by the control server (EdDSA, `typ` labgate-bundle+jwt),
addressed to this gateway (`aud` labgate:gateway:<name>), with a version that only grows. The
gateway refuses one whose signature, issuer, audience or expiry is wrong, and one whose version is
not above the last it accepted, so an old bundle replayed (with a grant since withdrawn) cannot
bring that grant back. The last accepted version is kept on disk so that this holds across
restarts. A bundle that expires with no fresh one after it stops counting: its grants go, and the
sessions that relied on them close.

Fetching is a long poll: the gateway sends the `changes` number of its bundle as `after`, and the
server answers as soon as anything changed past it (a new bundle) or, after a bounded wait, with
204 (nothing new). `labgate.gateway.reload.follow_control` asks again at once after each answer.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labgate.auth.errors import AuthError
from labgate.auth.keyring import PublicKeySet
from labgate.auth.tokens import verify_claims
from labgate.gateway.config import ControlConfig, Grant
from labgate.gateway.errors import BundleError, ConfigError
from labgate.gateway.revocation import RevocationList
from labgate.scpi.access import AccessLevel

BUNDLE_TYPE = "labgate-bundle+jwt"
# How long one long poll may wait at the server; the server may bound it lower
# (`bundle_wait_seconds`). The HTTP read timeout allows for this plus a margin.
LONG_POLL_SECONDS = 25.0
FETCH_MARGIN_SECONDS = 15.0
log = logging.getLogger("labgate.gateway.bundles")


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    version: int
    expires: datetime
    grants: tuple[Grant, ...]
    crl_pem: bytes
    issued: datetime | None = None
    # The server's change number this bundle was built at; None from a server without the
    # long poll.
    changes: int | None = None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires

    def fresh(self, now: datetime) -> bool:
        """More than half its life left: worth waiting on rather than asking for a new one."""
        if self.issued is None:
            return False
        return now < self.issued + (self.expires - self.issued) / 2


def read_bundle(
    token: str,
    jwks: Mapping[str, Any],
    *,
    control: ControlConfig,
    now: datetime,
    above_version: int,
) -> Bundle:
    """Verify a bundle and read it; BundleError names what is wrong with it."""
    audience = f"labgate:gateway:{control.gateway_name}"
    try:
        keys = PublicKeySet.from_jwks(dict(jwks))
        claims = verify_claims(
            token, keys, typ=BUNDLE_TYPE, issuer=control.issuer, audience=audience, now=now
        )
    except (AuthError, ValueError, TypeError) as exc:
        raise BundleError(f"bundle from {control.url} refused: {exc}") from exc
    version = claims.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"bundle from {control.url} has no integer version")
    if version <= above_version:
        raise BundleError(
            f"bundle version {version} from {control.url} is not above {above_version}, "
            "the last one accepted (an old bundle replayed?)"
        )
    crl = claims.get("crl_pem")
    if not isinstance(crl, str):
        raise BundleError(f"bundle version {version} carries no crl_pem")
    try:
        RevocationList.all_from_pem(crl.encode(), source=f"bundle version {version}")
    except ConfigError as exc:
        raise BundleError(str(exc)) from exc
    changes = claims.get("changes")
    if changes is not None and (not isinstance(changes, int) or isinstance(changes, bool)):
        raise BundleError(f"bundle version {version}: changes must be an integer")
    issued = claims.get("iat")
    return Bundle(
        version=version,
        expires=datetime.fromtimestamp(int(claims["exp"]), UTC),
        grants=tuple(_grant(g, version) for g in _list(claims.get("grants"), version)),
        crl_pem=crl.encode(),
        issued=datetime.fromtimestamp(int(issued), UTC) if isinstance(issued, int) else None,
        changes=changes,
    )


def _list(value: object, version: int) -> list[Any]:
    if not isinstance(value, list):
        raise BundleError(f"bundle version {version}: grants must be a list")
    return value


def _grant(item: object, version: int) -> Grant:
    if not isinstance(item, dict):
        raise BundleError(f"bundle version {version}: a grant must be an object, got {item!r}")
    identity, instrument, level = item.get("identity"), item.get("instrument"), item.get("level")
    if not isinstance(identity, str) or not identity.startswith("labgate:"):
        raise BundleError(
            f"bundle version {version}: grant identity {identity!r} is no labgate: URI"
        )
    if not isinstance(instrument, str) or not instrument:
        raise BundleError(f"bundle version {version}: grant instrument {instrument!r} is empty")
    try:
        parsed = AccessLevel.parse(str(level))
    except ValueError as exc:
        raise BundleError(f"bundle version {version}: {exc}") from exc
    return Grant(identity=identity, instrument=instrument, level=parsed)


class BundleStore:
    """The last accepted version and the bundle's CRL, on disk next to the configuration."""

    def __init__(self, control: ControlConfig) -> None:
        self.crl_path = control.cache_dir / f"{control.gateway_name}.crl"
        self._version_path = control.cache_dir / f"{control.gateway_name}.version"

    def last_version(self) -> int:
        try:
            return int(json.loads(self._version_path.read_text())["version"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read {self._version_path}: {exc}") from exc

    def keep(self, bundle: Bundle) -> None:
        """The CRL first: a version on disk always has its CRL beside it."""
        _write_atomic(self.crl_path, bundle.crl_pem)
        _write_atomic(self._version_path, json.dumps({"version": bundle.version}).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def fetch(
    control: ControlConfig,
    *,
    cert: Path,
    key: Path,
    instruments: Sequence[str] = (),
    after: int | None = None,
    wait: float = LONG_POLL_SECONDS,
) -> tuple[str, dict[str, Any]] | None:
    """GET the bundle (with our client certificate) and the server's JWKS.

    With `after`, the server holds the request until something changed past that change number
    (then a bundle) or `wait` seconds pass (then None: nothing new).
    """
    import httpx

    context = ssl.create_default_context(cafile=str(control.server_ca))
    context.load_cert_chain(str(cert), str(key))
    params: dict[str, Any] = {"instrument": list(instruments)}
    if after is not None:
        params.update(after=after, wait=wait)
    timeout = httpx.Timeout(30.0, read=wait + FETCH_MARGIN_SECONDS)
    async with httpx.AsyncClient(base_url=control.url, verify=context, timeout=timeout) as client:
        try:
            response = await client.get(
                f"/api/v1/gateways/{control.gateway_name}/bundle", params=params
            )
            response.raise_for_status()
            if response.status_code == 204:
                return None
            jwks = await client.get("/.well-known/jwks.json")
            jwks.raise_for_status()
            return response.text, jwks.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise BundleError(f"cannot fetch the bundle from {control.url}: {exc}") from exc
