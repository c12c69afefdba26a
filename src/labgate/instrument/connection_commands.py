"""Commands about the connection itself: authentication, access level, subscriptions, help."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from typing import TYPE_CHECKING

from labgate.instrument.dispatch import flag, table
from labgate.instrument.expansion import expanded_args
from labgate.instrument.outcomes import Outcome, error
from labgate.scpi import values
from labgate.scpi.access import AccessLevel
from labgate.scpi.messages import Command, Error, Ok

if TYPE_CHECKING:
    from labgate.instrument.session import Session

CHALLENGE_BYTES = 16


def new_challenge() -> str:
    """Random hex with at least one letter: qslib re-types an all-digit token as a number."""
    while True:
        challenge = secrets.token_hex(CHALLENGE_BYTES)
        if any(char in string.ascii_lowercase for char in challenge):
            return challenge


def answer_to(secret: str, challenge: str) -> str:
    return hmac.new(secret.encode(), challenge.encode(), hashlib.md5).hexdigest()


async def challenge(session: Session, command: Command) -> Outcome:
    session.challenge = new_challenge()
    return Ok(ident=command.ident, text=session.challenge)


async def authenticate(session: Session, command: Command) -> Outcome:
    issued, session.challenge = session.challenge, None  # one answer per challenge
    args = await expanded_args(session, command)
    if issued is None or len(args) != 1:
        return error(command.ident, "AuthError", "AUTH needs one answer to a fresh CHAL?")
    given = args[0].lower().encode()
    granted = None
    for secret, level in _accepted_secrets(session):
        # Compare against every secret, in constant time each, so timing says nothing.
        if hmac.compare_digest(answer_to(secret, issued).encode(), given):
            granted = level if granted is None else max(granted, level)
    if granted is None:
        return error(command.ident, "AuthError", "Authentication failed")
    session.ceiling = max(session.ceiling, granted)
    return Ok(ident=command.ident)


def _accepted_secrets(session: Session) -> list[tuple[str, AccessLevel]]:
    """The configured passwords, and the `RAND?` key while one is active."""
    accepted = list(session.security.passwords.items())
    key = session.state.random_keys.active()
    if key is not None:
        accepted.append((key, AccessLevel.ADMINISTRATOR))
    return accepted


async def random_key(session: Session, command: Command) -> Outcome:
    # The instrument's own hole, kept: a Controller mints an Administrator password. The key is
    # a reply, never a logged command, so it stays out of the command log.
    return Ok(ident=command.ident, text=session.state.random_keys.current())


async def set_access(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if len(args) != 1:
        return error(command.ident, "InvocationError", "ACC needs one level, e.g. Observer")
    try:
        wanted = AccessLevel.parse(args[0])
    except ValueError as exc:
        return error(command.ident, "InvocationError", str(exc))
    if wanted > session.ceiling:
        return Error(
            ident=command.ident,
            error_class="AccessLevelExceeded",
            fields=(("accessLimit", f'"{session.ceiling.label}"'),),
            message=f"Access level {wanted.label} exceeds limit {session.ceiling.label}",
        )
    session.level = wanted
    session.stealth = flag(command, "stealth")
    session.exclusive = flag(command, "exclusive")
    return Ok(ident=command.ident)


async def get_access(session: Session, command: Command) -> Outcome:
    text = f"-stealth={session.stealth} -exclusive={session.exclusive} {session.level.label}"
    return Ok(ident=command.ident, text=text)


async def quit_session(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident)


async def subscribe(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    session.topics.update(topic.lower() for topic in args)
    session.timestamps = flag(command, "timestamp") or session.timestamps
    return Ok(ident=command.ident)


async def unsubscribe(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    for topic in args:
        session.topics.discard(topic.lower())
    return Ok(ident=command.ident)


async def describe(session: Session, command: Command) -> Outcome:
    from labgate.scpi.names import canonical

    args = await expanded_args(session, command)
    if args:
        name = canonical(args[0])
        if name not in session.handlers:
            return error(command.ident, "NoMatch", f"No help for {args[0]}")
        return Ok(ident=command.ident, text=values.quote(session.handlers[name].help))
    lines = "\n".join(session.handlers[name].help for name in sorted(session.handlers))
    return Ok(ident=command.ident, text=f"<quote.reply>\n{lines}\n</quote.reply>")


async def system_exec(session: Session, command: Command) -> Outcome:
    # The real instrument runs this as root. The simulator only shows that it got through: the
    # command log already holds it.
    return Ok(ident=command.ident)


async def evaluate(session: Session, command: Command) -> Outcome:
    return Ok(ident=command.ident)


COMMANDS = table(
    ("CHAL?", challenge, "CHAL?: a challenge for AUTH"),
    (
        "AUTH",
        authenticate,
        "AUTH HEX: hex HMAC-MD5(password, challenge): raise the reachable level",
    ),
    (
        "RAND?",
        random_key,
        "RAND?: a 6-digit key, valid 10 minutes, that AUTH takes for Administrator",
    ),
    ("ACCESS", set_access, "ACC [-stealth=] [-exclusive=] LEVEL: set this session's level"),
    ("ACCESS?", get_access, "ACC?: this session's level"),
    ("QUIT", quit_session, "QUIT: end the session"),
    ("SUBS+", subscribe, "SUBS+ [-timestamp=true] TOPIC...: receive MESSage events"),
    ("UNS", unsubscribe, "UNS TOPIC...: stop receiving MESSage events"),
    ("HELP?", describe, "HELP? [command]: what the simulator understands"),
    ("SYSTEM:EXEC", system_exec, "SYST:EXEC SHELL: recorded, never executed"),
    ("EVAL?", evaluate, "eval? PYTHON: recorded, never executed"),
)
