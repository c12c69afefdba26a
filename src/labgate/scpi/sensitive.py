"""Commands that are more than the level they need: those that hold a connection's state, and
those that carry secrets. One list of each, read by the gateway and the simulator alike.

Session state
-------------
`CHAL?`, `AUTH`, `ACC`, `ACC?` are the connection's login and level; `SUBS+` / `UNS` decide what
the instrument sends it unasked (and `-timestamp=`, how); `QUIT` ends it; `RAND?` mints a key that
`AUTH` takes. Whoever holds a session answers or applies these itself: a gateway keeps the
session's level, its login is its own. Nested in a substitution (`RET $(ACC Controller)`) any of
them would act on the connection behind the holder's back, so a policy refuses them nested at
every level (`access.LABGATE`).

The instrument's parser is not known beyond what qslib sends, so a name is taken for one of these
whenever it could be a spelling of one: after a leading `:` (an SCPI root), quotes and white
space are dropped and ASCII letters folded, it starts with one of `SESSION_STATE_STEMS` (`ACCE`,
`:acc`, `"ACC"` all count). A nested command whose name is not written out plainly
(`$($(RUNTitle?) Controller)`, `$(${X:-ACC} Controller)`) could be any of them: it is refused
likewise (see `plain_name`).

Secrets
-------
`AUTH` carries an answer derived from a password; `CONF` lines carry passwords in clear
(`CONF* access secrets <password> Full`). A command bears a secret when its own name, or the name
of any command nested in it at any depth, could be a spelling of one of `SECRET_STEMS`, or when a
nested name is not written out plainly (it could be one). Logs keep no argument, option, body
digest or excerpt of such a command; `may_bear_secret` says the same for bytes that do not even
parse.
"""

import re

from labgate.scpi import names

SESSION_STATE: frozenset[str] = frozenset(
    names.canonical(name)
    for name in ("CHAL?", "AUTH", "ACC", "ACC?", "QUIT", "SUBS+", "UNS", "RAND?")
)
"""Canonical names of the commands that hold or change a connection's state."""

ANSWERED_BY_HOLDER: frozenset[str] = frozenset(
    names.canonical(name) for name in ("CHAL?", "AUTH", "ACC", "ACC?")
)
"""Of those, the ones whoever holds the session answers itself (its login, its level)."""

SESSION_STATE_STEMS = ("ACC", "AUTH", "CHAL", "QUIT", "SUBS", "UNS", "RAND")
SECRET_STEMS = ("CONF", "AUTH")

SECRET_BEARING: frozenset[str] = frozenset(
    name for name in names.KNOWN if name.startswith(SECRET_STEMS)
)
"""Canonical names of the known commands that carry secrets (AUTH, every CONF setter)."""

# A command name as qslib writes them: `DRAW?`, `TBC:SampleTemperatures?`, `EXP:ATTR=`, `CONF*`,
# `SUBS+`, `*IDN?`. Anything else (a `$`, a quote, a leading `:`, white space or a control
# character) is a name the instrument may read as something other than what it looks like.
_PLAIN_NAME = re.compile(r"[A-Za-z*][A-Za-z0-9_.:]*[?=*+]?")
# What may stand around a name that an unknown parser would drop before it reads the name.
_WRAPPING = " \t\r\n\v\f\"':"
# Where a nested command starts, and its name (up to a space or the end of the substitution).
_NESTED_NAME = re.compile(r"\$\(\s*([^ )]*)")
_MAYBE_SECRET = re.compile(rb"conf|auth", re.IGNORECASE)


def plain_name(name: str) -> bool:
    """Whether `name` is written out plainly (letters, digits, `_ . :` and one final `? = * +`)."""
    return _PLAIN_NAME.fullmatch(name) is not None


def _folded(name: str) -> str:
    return name.strip(_WRAPPING).upper()


def is_session_state(name: str) -> bool:
    """Whether command `name`, as written, could be a spelling of a `SESSION_STATE` command."""
    return names.canonical(name) in SESSION_STATE or _folded(name).startswith(SESSION_STATE_STEMS)


def names_secret(name: str) -> bool:
    """Whether command `name`, as written, could be a spelling of a secret-bearing command."""
    return names.canonical(name) in SECRET_BEARING or _folded(name).startswith(SECRET_STEMS)


def nested_names(text: str) -> list[str]:
    """The name of every `$(...)` command in `text`, at any depth, as written; found by a lexical
    scan that needs no balanced brackets (so text that does not parse is covered too)."""
    return _NESTED_NAME.findall(text) if "$(" in text else []


def bears_secret(
    name: str, options: tuple[tuple[str, str], ...], args: tuple[str, ...], body: str | None
) -> bool:
    """Whether a command (its parts as parsed) carries a secret: see the module doc."""
    if names_secret(name):
        return True
    texts = [name, *(value for _, value in options), *args]
    if body is not None:
        texts.append(body)
    return any(
        names_secret(nested) or not plain_name(nested)
        for text in texts
        for nested in nested_names(text)
    )


def may_bear_secret(raw: bytes) -> bool:
    """For bytes that do not parse as a command: whether they might carry a secret."""
    return _MAYBE_SECRET.search(raw) is not None
