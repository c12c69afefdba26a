"""`labgate server init`: everything a new server needs, in a data directory of its own.

Order matters: the checks that refuse come first; the configuration file, which marks the
directory as initialised, is written last, so an init that failed halfway is recognisable.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from labgate.auth.keyring import KeyRing
from labgate.control import accounts, jobkeys, keystore
from labgate.control.database import make_engine, migrate, session_factory
from labgate.control.errors import AlreadyInitialised
from labgate.control.layout import (
    ADMIN_PASSWORD_FILE,
    CA_DIR,
    ca_dir,
    ca_root_path,
    server_certificate_path,
)
from labgate.control.servercertificate import issue_server_certificate
from labgate.control.settings import CONFIG_FILE, ControlSettings
from labgate.control.tables import User
from labgate.pki.atomic import PRIVATE, write_atomic
from labgate.pki.authority import CertificateAuthority
from labgate.posture.mode import SecureConfig
from labgate.posture.table import render_table

log = logging.getLogger("labgate.control")

ADMIN_USERNAME = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Initialised:
    data_dir: Path
    database_url: str
    admin_password_file: Path
    ca_root: Path
    server_certificate: Path


def initialise(
    settings: ControlSettings,
    *,
    config: Mapping[str, object],
    secure: SecureConfig | None = None,
) -> Initialised:
    """Create the database, keys, CA, server certificate and admin user; refuse if any exists.

    `config` holds the options given to init that later commands must see (written to
    `server.toml`); `secure`, when given, is written as its `[secure]` table (a new
    installation from the command line has every switch on).
    """
    data_dir = settings.data_dir
    _refuse_existing(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _create_private_sqlite_file(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        with sessions() as session:
            if session.scalar(select(func.count()).select_from(User)):
                raise AlreadyInitialised(
                    "the database already holds users; it belongs to another server "
                    "(use `labgate server migrate` to upgrade it)"
                )
        passphrase = keystore.create_passphrase(settings.passphrase_path)
        now = datetime.now(UTC)
        _create_ca(settings, passphrase)
        keystore.write_keyring(
            keystore.keyring_path(settings), KeyRing.generate(now=now), passphrase
        )
        jobkeys.ensure_jobs_keyring(jobkeys.jobs_keyring_path(settings), passphrase, now=now)
        admin_file = _create_admin(settings, sessions, now=now)
    finally:
        engine.dispose()
    text = _toml(config)
    if secure is not None:
        text += "\n" + render_table(secure)
    write_atomic(data_dir / CONFIG_FILE, text.encode("utf-8"), mode=PRIVATE)
    return Initialised(
        data_dir=data_dir,
        database_url=settings.resolved_database_url,
        admin_password_file=admin_file,
        ca_root=ca_root_path(data_dir),
        server_certificate=server_certificate_path(data_dir),
    )


def _refuse_existing(data_dir: Path) -> None:
    for name in (CONFIG_FILE, keystore.KEYRING_FILE, ADMIN_PASSWORD_FILE, CA_DIR):
        if (data_dir / name).exists():
            raise AlreadyInitialised(
                f"{data_dir} already holds a server (found {name}); refusing to overwrite it"
            )


def _create_ca(settings: ControlSettings, passphrase: bytes) -> None:
    with CertificateAuthority.init(
        ca_dir(settings.data_dir), name="labgate CA", passphrase=passphrase
    ) as ca:
        issue_server_certificate(settings, ca)


def _create_admin(
    settings: ControlSettings, sessions: sessionmaker[Session], *, now: datetime
) -> Path:
    rules = accounts.password_rules(settings)
    with sessions() as session, session.begin():
        _, password = accounts.create_user(
            session, rules, username=ADMIN_USERNAME, role="admin", now=now
        )
    path = settings.data_dir / ADMIN_PASSWORD_FILE
    write_atomic(path, password.encode("ascii") + b"\n", mode=PRIVATE)
    return path


def _create_private_sqlite_file(url: str) -> None:
    """Make a new SQLite file 0600 before SQLite does (it follows the umask): hashes live there."""
    database = make_url(url).database
    if not url.startswith("sqlite") or not database or database == ":memory:":
        return
    path = Path(database)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _toml(config: Mapping[str, object]) -> str:
    lines = ["# labgate server configuration (written by `labgate server init`)."]
    for key, value in sorted(config.items()):
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must read back
    return text


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
