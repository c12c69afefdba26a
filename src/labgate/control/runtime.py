"""What one running server holds: settings, database, keys, CA, clock and metrics.

`Runtime.open(settings)` builds it (create_app calls it); nothing here exists at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from labgate.control import jobkeys, keystore
from labgate.control.accounts import PasswordRules, password_rules
from labgate.control.acme.context import AcmeContext
from labgate.control.acme.external import Sealer
from labgate.control.certificates import sync_inventory
from labgate.control.changefeed import ChangeFeed, InventoryWatch
from labgate.control.database import (
    current_revision,
    head_revision,
    make_engine,
    session_factory,
)
from labgate.control.errors import NotInitialised
from labgate.control.layout import ca_dir
from labgate.control.metrics import Metrics, served_certificates
from labgate.control.minting import TokenMint
from labgate.control.rotation import Rotation
from labgate.control.servercertificate import renew_server_certificate_if_due
from labgate.control.settings import ControlSettings
from labgate.control.standing import current_value, record_change
from labgate.control.transactions import unit_of_work
from labgate.control.verified import VerifiedTokens
from labgate.pki.authority import INVENTORY, CertificateAuthority

Clock = Callable[[], datetime]


def require_current_schema(engine: Engine) -> None:
    """Refuse to serve a database whose schema is older (or newer) than this code's."""
    found, wanted = current_revision(engine), head_revision()
    if found != wanted:
        engine.dispose()
        raise NotInitialised(
            f"the database is at schema revision {found or 'none'}, this labgate needs "
            f"{wanted}: run `labgate server migrate` (or `init` for a new server)"
        )


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    settings: ControlSettings
    engine: Engine
    sessions: sessionmaker[Session]
    rules: PasswordRules
    keys: keystore.SigningKeys
    # The jobs signing keys (labgate.control.jobkeys): never the token keys.
    job_keys: keystore.SigningKeys
    ca: CertificateAuthority
    metrics: Metrics
    verified: VerifiedTokens
    mint: TokenMint
    rotation: Rotation
    changes: ChangeFeed
    clock: Clock
    acme: AcmeContext

    @classmethod
    def open(cls, settings: ControlSettings, *, clock: Clock = utc_now) -> Runtime:
        passphrase = keystore.load_passphrase(settings)
        keys = keystore.SigningKeys(keystore.keyring_path(settings), passphrase)
        job_keys = jobkeys.open_jobs_keys(settings, passphrase, now=clock())
        ca = CertificateAuthority.open(ca_dir(settings.data_dir), passphrase=passphrase)
        renew_server_certificate_if_due(settings, ca, now=clock())
        engine = make_engine(settings.resolved_database_url)
        require_current_schema(engine)
        sessions = session_factory(engine)
        with unit_of_work(sessions) as session:
            # Revocations recorded in the database whose copy to the CA's inventory was cut short.
            sync_inventory(session, ca.inventory, now=clock())
        metrics = Metrics.create(
            certificates=functools.partial(served_certificates, settings.data_dir)
        )
        mint = TokenMint.of(settings, keys.ring)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            rules=password_rules(settings),
            keys=keys,
            job_keys=job_keys,
            ca=ca,
            metrics=metrics,
            verified=VerifiedTokens(),
            mint=mint,
            rotation=Rotation(
                mint=mint,
                inventory=ca.inventory,
                grace=timedelta(seconds=settings.refresh_grace_seconds),
                outcomes=metrics.refreshes,
            ),
            changes=ChangeFeed(
                functools.partial(
                    _read_changes, engine, InventoryWatch(ca.inventory, ca.directory / INVENTORY)
                ),
                interval=settings.bundle_check_seconds,
                per_key=settings.bundle_waiters_per_gateway,
            ),
            clock=clock,
            acme=AcmeContext(
                settings=settings,
                engine=engine,
                sessions=sessions,
                ca=ca,
                sealer=Sealer(passphrase),
                clock=clock,
            ),
        )

    def close(self) -> None:
        # A certificate still pending now was signed for a request whose transaction never
        # committed (handing out waits for the commit), so its holder never got it: failed.
        self.ca.close(failed=True)
        self.engine.dispose()


def _read_changes(engine: Engine, watch: InventoryWatch | None = None) -> int:
    """The `changes` counter; first stepped if the CA's inventory gained a revocation."""
    if watch is not None and watch.moved():
        with unit_of_work(session_factory(engine)) as session:
            record_change(session)
    with engine.connect() as connection:
        return current_value(connection)
