"""Where a login is kept: one JSON file, 0600, in the user's configuration directory.

The directory is `$LABGATE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/labgate`, else
`~/.config/labgate`, made 0700. The token file (`login.json`) is written atomically with its
final mode; it holds the server's URL, the user name, the tokens and their times, and names the
copy of the server's CA kept next to it (`server-ca.pem`). It never holds a password.

Reading refuses a file another user owns, a symbolic link in its place, and a directory others
may write to (they could swap the file). A file that group or others may read is made 0600 and
the user is told, since whoever read it holds the login until it is ended on the server.

Two `labgate` commands of the same user may refresh at once; `locked()` (an advisory lock on a
file next to the tokens) makes the second wait and then read what the first wrote, so that it
does not present a refresh token the first already rotated (the server would take that for a
stolen copy and end the login).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from labgate.login.errors import CorruptLogin, NotLoggedIn, UnsafeFile
from labgate.pki.atomic import PRIVATE, PUBLIC, write_atomic
from labgate.pki.renewal import refresh_due

CONFIG_DIR_ENV = "LABGATE_CONFIG_DIR"
TOKEN_FILE = "login.json"  # noqa: S105 (a file name)
SERVER_CA_FILE = "server-ca.pem"
LOCK_FILE = ".login.lock"
FORMAT = 1
# A token file is a few kilobytes; anything much larger is not one we wrote.
MAX_FILE_BYTES = 64 * 1024


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's labgate configuration directory (not created here)."""
    if environ.get(CONFIG_DIR_ENV):
        return Path(environ[CONFIG_DIR_ENV])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "labgate"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    """A token pair and its times (this machine's clock at receipt plus the lifetimes given)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    obtained_at: datetime
    access_expires_at: datetime
    refresh_expires_at: datetime | None = None
    session_expires_at: datetime | None = None
    password_change_required: bool = False

    @classmethod
    def from_pair(cls, body: Mapping[str, Any], *, now: datetime) -> Tokens:
        """From the server's TokenPair body."""

        def after(key: str) -> datetime | None:
            seconds = body.get(key)
            return now + timedelta(seconds=int(seconds)) if seconds is not None else None

        try:
            return cls(
                access_token=str(body["access_token"]),
                refresh_token=str(body["refresh_token"]),
                obtained_at=now,
                access_expires_at=now + timedelta(seconds=int(body["expires_in"])),
                refresh_expires_at=after("refresh_expires_in"),
                session_expires_at=after("session_expires_in"),
                password_change_required=bool(body.get("password_change_required", False)),
            )
        except (KeyError, TypeError, ValueError):
            raise CorruptLogin(
                "the server's token answer lacks the tokens or their lifetimes"
            ) from None

    def access_due(self) -> datetime:
        """When to refresh before the next call: 2/3 of the access token's life, jittered."""
        return refresh_due(self.obtained_at, self.access_expires_at)

    def refresh_deadline(self) -> datetime | None:
        """The last moment the refresh token is taken (None: the server did not say)."""
        ends = [t for t in (self.refresh_expires_at, self.session_expires_at) if t is not None]
        return min(ends) if ends else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    server: str
    server_ca: Path | None  # None: the system's trust store
    username: str
    tokens: Tokens

    def to_json(self) -> bytes:
        t = self.tokens
        data = {
            "format": FORMAT,
            "server": self.server,
            "server_ca": str(self.server_ca) if self.server_ca is not None else None,
            "username": self.username,
            "access_token": t.access_token,
            "refresh_token": t.refresh_token,
            "obtained_at": t.obtained_at.isoformat(),
            "access_expires_at": t.access_expires_at.isoformat(),
            "refresh_expires_at": _iso(t.refresh_expires_at),
            "session_expires_at": _iso(t.session_expires_at),
            "password_change_required": t.password_change_required,
        }
        return (json.dumps(data, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, *, source: Path) -> Login:
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise CorruptLogin(f"{source} is of format {data.get('format')!r}, not {FORMAT}")
            ca = data["server_ca"]
            return cls(
                server=str(data["server"]),
                server_ca=Path(ca) if ca is not None else None,
                username=str(data["username"]),
                tokens=Tokens(
                    access_token=str(data["access_token"]),
                    refresh_token=str(data["refresh_token"]),
                    obtained_at=_time(data["obtained_at"]),
                    access_expires_at=_time(data["access_expires_at"]),
                    refresh_expires_at=_maybe_time(data.get("refresh_expires_at")),
                    session_expires_at=_maybe_time(data.get("session_expires_at")),
                    password_change_required=bool(data.get("password_change_required", False)),
                ),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            # Never quote the content: it holds tokens.
            raise CorruptLogin(
                f"{source} is not a login file as `labgate login` writes it; remove it and "
                "log in again"
            ) from None


class LoginStore:
    """The token file and the server CA copy in one configuration directory."""

    def __init__(self, directory: Path, *, warn: Callable[[str], None]) -> None:
        self.directory = directory
        self.path = directory / TOKEN_FILE
        self.ca_path = directory / SERVER_CA_FILE
        self._warn = warn

    def prepare(self) -> None:
        """Make the directory (0700) if needed; refuse one others may write to."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = self.directory.stat()
        if info.st_uid != os.getuid():
            raise UnsafeFile(f"{self.directory} belongs to another user (uid {info.st_uid})")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafeFile(
                f"{self.directory} may be written by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"make it 0700 (chmod 700 {self.directory})"
            )

    def read(self) -> Login | None:
        """The saved login, None if there is none."""
        if not self.directory.exists():
            return None
        self.prepare()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            if self.path.is_symlink():
                raise UnsafeFile(
                    f"{self.path} is a symbolic link; a login file is a plain file"
                ) from None
            raise OSError(error.errno, error.strerror, str(self.path)) from None
        with os.fdopen(fd, "rb") as handle:
            self._check_file(handle.fileno())
            raw = handle.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise CorruptLogin(f"{self.path} is larger than a login file ({MAX_FILE_BYTES} bytes)")
        return Login.from_json(raw, source=self.path)

    def require(self) -> Login:
        login = self.read()
        if login is None:
            raise NotLoggedIn(
                f"not logged in ({self.path} does not exist): run `labgate login URL`"
            )
        return login

    def save(self, login: Login) -> None:
        self.prepare()
        write_atomic(self.path, login.to_json(), mode=PRIVATE)

    def keep_ca(self, pem: bytes) -> Path:
        self.prepare()
        write_atomic(self.ca_path, pem, mode=PUBLIC)
        return self.ca_path

    def remove(self) -> bool:
        """Delete the token file; whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the advisory lock for a read-refresh-write of the tokens."""
        self.prepare()
        fd = os.open(
            self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _check_file(self, fd: int) -> None:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{self.path} is not a plain file")
        if info.st_uid != os.getuid():
            raise UnsafeFile(f"{self.path} belongs to another user (uid {info.st_uid})")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            os.fchmod(fd, PRIVATE)
            self._warn(
                f"{self.path} was readable by others (mode {mode:o}); it is 0600 now. Whoever "
                "read it holds your login: run `labgate logout` and log in again"
            )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("naive time")
    return moment.astimezone(UTC)


def _maybe_time(text: str | None) -> datetime | None:
    return _time(text) if text is not None else None
