"""`labgate server`: set up, migrate, run the control server, and rotate its signing keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from labgate.cli.boundary import fail
from labgate.cli.group import Group

app = typer.Typer(
    cls=Group, help="The control server: users, tokens, devices, grants.", no_args_is_help=True
)

DataDir = Annotated[
    Path,
    typer.Option("--data", metavar="DIR", help="The server's data directory.", file_okay=False),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL; prefer LABGATE_DATABASE_URL when it holds a password.",
        show_default="SQLite in --data, or server.toml's",
    ),
]


def _fail(error: Exception) -> typer.Exit:
    return fail(str(error))


def _settings(data: Path, **overrides: Any) -> Any:
    from pydantic import ValidationError

    from labgate.control.settings import ControlSettings

    try:
        return ControlSettings.load(data, **overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise _fail(ValueError(f"configuration refused: {problems}")) from None


def _safe_url(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command("init")
def init(
    data: DataDir,
    database_url: DatabaseUrl = None,
    password_policy: Annotated[
        str | None,
        typer.Option(
            "--password-policy",
            metavar="[nist|enhanced]",
            help="Which passwords users may choose (nist is refused while [secure] pwd, on "
            "for a new server, enforces enhanced).",
            show_default="enhanced, by [secure] pwd",
        ),
    ] = None,
) -> None:
    """Create the database, signing keys, CA, server certificate and the admin user."""
    from labgate.control.errors import ControlError
    from labgate.control.provisioning import initialise
    from labgate.pki.errors import PkiError
    from labgate.posture.mode import SecureConfig

    if password_policy is not None and password_policy not in ("nist", "enhanced"):
        raise _fail(ValueError(f"--password-policy {password_policy!r}: expected nist or enhanced"))
    if password_policy == "nist":  # noqa: S105 (a policy name)
        # A new server has [secure] pwd on, which enforces the enhanced policy and more (idle
        # timeouts, weak stored passwords changed): refused rather than quietly overridden, and
        # rather than quietly turning pwd off.
        config_file = data / "server.toml"
        raise _fail(
            ValueError(
                "--password-policy nist conflicts with [secure] pwd, which a new server has on "
                "and which enforces the enhanced policy (and idle session timeouts); to have "
                "the NIST policy, init without --password-policy, then turn pwd off: "
                f"`labgate secure --config {config_file} -pwd`"
            )
        )
    settings = _settings(data, database_url=database_url, password_policy=password_policy)
    config = {"database_url": database_url, "password_policy": password_policy}
    try:
        # A new installation has enhanced security on (`labgate secure` changes it).
        done = initialise(settings, config=config, secure=SecureConfig())
    except (ControlError, PkiError) as error:
        raise _fail(error) from None
    typer.echo(f"initialised labgate server in {done.data_dir}")
    typer.echo(f"database: {_safe_url(done.database_url)}")
    typer.echo(f"CA root certificate (clients trust this): {done.ca_root}")
    typer.echo(f"admin one-time password written to {done.admin_password_file} (mode 0600);")
    typer.echo("log in as 'admin' with it: the first login must change it")
    typer.echo(f"enhanced security: all on ([secure] in {done.data_dir / 'server.toml'})")


@app.command("migrate")
def migrate(data: DataDir, database_url: DatabaseUrl = None) -> None:
    """Upgrade the database of an existing server to this version's schema."""
    from sqlalchemy.exc import SQLAlchemyError

    from labgate.control.database import make_engine
    from labgate.control.database import migrate as upgrade
    from labgate.control.settings import CONFIG_FILE

    if not (data / CONFIG_FILE).is_file():
        raise _fail(FileNotFoundError(f"{data} holds no server; run `labgate server init`"))
    settings = _settings(data, database_url=database_url)
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        revision = upgrade(engine)
    except SQLAlchemyError as error:
        raise _fail(RuntimeError(f"migration failed: {type(error).__name__}")) from None
    finally:
        engine.dispose()
    typer.echo(f"database {_safe_url(settings.resolved_database_url)} at revision {revision}")


@app.command("run")
def run(
    data: DataDir,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help="Where to serve HTTPS (port 0: a free one).",
            show_default="server.toml's listen, else 127.0.0.1:8443",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the API over HTTPS; prints one JSON line with the bound address when ready."""
    from labgate.control.http.serving import run as serve

    settings = _settings(data, database_url=database_url, listen=listen)
    # An address in use, a missing file, a refused configuration: one line, from the boundary.
    serve(settings, listen=settings.listen)


@app.command("rotate-keys")
def rotate_keys(
    data: DataDir,
    jobs: Annotated[
        bool, typer.Option("--jobs", help="Rotate the jobs signing key instead of the token key.")
    ] = False,
) -> None:
    """Make a new token (or jobs) signing key; the old one verifies until what it signed has
    expired (a job is signed afresh each time it is handed out)."""
    from datetime import UTC, datetime

    from labgate.control import jobkeys, keystore
    from labgate.control.errors import ControlError

    settings = _settings(data)
    path = jobkeys.jobs_keyring_path(settings) if jobs else keystore.keyring_path(settings)
    try:
        passphrase = keystore.load_passphrase(settings)
        ring = keystore.rotate(path, passphrase, now=datetime.now(UTC))
    except ControlError as error:
        raise _fail(error) from None
    retired = ", ".join(k.kid for k in ring.retired) or "none"
    what = "jobs signing key" if jobs else "signing key"
    typer.echo(f"{what} is now {ring.current.kid}; still verifying: {retired}")


@app.command("unlock")
def unlock(
    username: Annotated[str, typer.Argument(metavar="USER", help="The account to unlock.")],
    data: DataDir,
    database_url: DatabaseUrl = None,
) -> None:
    """Lift an account's failed-login lock and delays (on this host, with the data directory)."""
    from labgate.control.errors import ControlError
    from labgate.control.recovery import unlock_user

    settings = _settings(data, database_url=database_url)
    try:
        name = unlock_user(settings, username)
    except ControlError as error:
        raise _fail(error) from None
    typer.echo(f"unlocked {name!r}: its failed-login counters are cleared")


@app.command("reset-password")
def reset_password(
    username: Annotated[str, typer.Argument(metavar="USER", help="The account to reset.")],
    data: DataDir,
    database_url: DatabaseUrl = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write the new one-time password (mode 0600).",
            show_default="DIR/USER-password",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Give an account a new one-time password, written to a 0600 file (never shown).

    The account's sessions end and its lock is lifted; its next login must change the password.
    """
    from labgate.control.errors import ControlError
    from labgate.control.recovery import reset_password as reset

    settings = _settings(data, database_url=database_url)
    try:
        done = reset(settings, username, out=out)
    except (ControlError, OSError) as error:
        raise _fail(error) from None
    typer.echo(f"new one-time password for {done.username!r} written to {done.path} (mode 0600);")
    typer.echo("its sessions have ended; the next login must change the password")
