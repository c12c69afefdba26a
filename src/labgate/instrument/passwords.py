"""Instrument passwords: each secret grants up to one access level (there are no user names).

Read from a TOML file of `[[password]]` tables (`level = "Controller"`, `secret = "..."`), or, when
none is given, made at random for every level above the password-free limit and written 0600 into
the state dir. A secret never appears in a log line, an exception or a `repr`.
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path

from labgate.instrument.errors import ConfigError
from labgate.instrument.storage import write_atomically
from labgate.scpi.access import AccessLevel

GENERATED_NAME = "passwords.toml"
# 24 random bytes: 192 bits, far beyond guessing, and still short enough to paste.
SECRET_BYTES = 24


def load_secrets(path: Path) -> dict[str, AccessLevel]:
    """Secrets from a TOML file; a `ConfigError` names the file and the entry, never a secret."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"secrets file {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"secrets file {path}: not valid TOML ({exc})") from None
    tables = document.get("password")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(
            f"secrets file {path}: expected one or more [[password]] tables with level and secret"
        )
    found: dict[str, AccessLevel] = {}
    for number, table in enumerate(tables, start=1):
        where = f"secrets file {path}, [[password]] #{number}"
        if not isinstance(table, dict) or set(table) != {"level", "secret"}:
            keys = sorted(table) if isinstance(table, dict) else type(table).__name__
            raise ConfigError(f"{where}: has {keys}; expected exactly 'level' and 'secret'")
        secret, level = table["secret"], table["level"]
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{where}: secret must be a non-empty string")
        if not isinstance(level, str):
            raise ConfigError(f"{where}: level must be a string such as 'Controller'")
        try:
            found[secret] = AccessLevel.parse(level)
        except ValueError:
            labels = ", ".join(member.label for member in AccessLevel)
            raise ConfigError(f"{where}: level {level!r} is not one of {labels}") from None
    return found


def generate_secrets(
    state_dir: Path, access_limit: AccessLevel
) -> tuple[dict[str, AccessLevel], Path]:
    """A random secret for every level above `access_limit`, written 0600 to the state dir.

    A file generated earlier is reused, so a restarted simulator keeps the passwords its users
    already copied.
    """
    path = state_dir / GENERATED_NAME
    if path.exists():
        return load_secrets(path), path
    made = {
        secrets.token_urlsafe(SECRET_BYTES): level for level in AccessLevel if level > access_limit
    }
    write_atomically(path, render_secrets(made), mode=0o600)
    return made, path


def render_secrets(passwords: Mapping[str, AccessLevel]) -> bytes:
    """The TOML text of a secrets file. JSON string syntax is valid TOML basic-string syntax."""
    blocks = [
        f"[[password]]\nlevel = {json.dumps(level.label)}\nsecret = {json.dumps(secret)}\n"
        for secret, level in passwords.items()
    ]
    header = "# labgate sim passwords: each secret grants up to its level.\n\n"
    return (header + "\n".join(blocks)).encode()


def loosely_readable(path: Path) -> bool:
    """Whether anyone but the owner may read `path` (a secrets file should be 0600)."""
    return bool(os.stat(path).st_mode & 0o077)
