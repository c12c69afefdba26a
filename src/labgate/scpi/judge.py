"""The one judge of a session holder (the gateway): what becomes of each command, and why.

    judge(command, context) -> Allowed | Denied | Answered

Theory of operation
-------------------
A command is judged whole, by `access.check` under the context's table: its own name, then every
command and expression nested in it at any depth (name, options, arguments, body), each by the
same rule (`access._own_need`) that judges a command at the top. So a command nested in
`$(...)`, `${..:-..}`, `$[..]`, an option or a tag body gets the verdict it would get on its own,
and more: a command that acts on the connection's own state (`sensitive.SESSION_STATE`) is
refused nested at every level, because its effect belongs to the holder alone.

What passes that check and is one of the holder's own commands (`sensitive.ANSWERED_BY_HOLDER`)
is `Answered`: `CHAL?` and `AUTH` (the identity comes from the client's certificate, the
instrument's password stays with the holder), `ACC?` (the holder keeps the session level) and an
`ACC` within the grant. An `ACC` that asks for stealth or exclusive access is `Allowed` with
`sets_level`: only the instrument can grant those, so it is sent (as built from the request, not
as received) and its level applies when the instrument says OK. An `ACC` above the grant is
`Denied` with `AccessLevelExceeded`.

A verdict depends on the command and on nothing but the `Context`; a cache of verdicts is keyed
by the whole context, so a rule that later reads the identity or the instrument gets no stale
answer.
"""

from dataclasses import dataclass
from typing import NamedTuple

from labgate.scpi import names, sensitive, values
from labgate.scpi.access import LABGATE, AccessLevel, Allowed, CommandTable, Denied, check
from labgate.scpi.messages import Command, Options

ACCESS = names.canonical("ACC")
ACCESS_QUERY = names.canonical("ACC?")


class Context(NamedTuple):
    """Everything a verdict depends on: the session's level and grant, the policy table, and
    who asks of which instrument (no rule reads those two yet; a cache key holds them).

    A named tuple rather than a frozen dataclass: it is a cache key looked up for every command,
    and a tuple hashes in C, from every field (a dataclass's `__hash__` is a Python call)."""

    level: AccessLevel
    grant: AccessLevel
    table: CommandTable = LABGATE
    instrument: str = ""
    identity: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered:
    """The holder answers the command itself; the instrument never sees it. `sets_level`: the
    level the session takes at once (an ACC within the grant)."""

    command: str
    reason: str
    sets_level: AccessLevel | None = None


Verdict = Allowed | Denied | Answered


def judge(command: Command, context: Context) -> Verdict:
    """The verdict on `command` in `context` (see the module doc)."""
    name = command.canonical
    if name == ACCESS:  # read strictly first: nothing but a level and two flags may be in it
        verdict = _access(command, context)
        if isinstance(verdict, Denied):
            return verdict
    decision = check(command, context.level, context.table)
    if isinstance(decision, Denied) or name not in sensitive.ANSWERED_BY_HOLDER:
        return decision
    if name == ACCESS:
        return verdict
    if name == ACCESS_QUERY:
        return Answered(command=name, reason="session level kept by the gateway")
    return Answered(command=name, reason="identity comes from the certificate")


def access_request(command: Command) -> tuple[AccessLevel, Options]:
    """`ACC [-stealth=B] [-exclusive=B] <Level>` read strictly: the level and the options, folded
    (`-stealth=true`); ValueError says what is wrong."""
    if len(command.args) != 1 or command.body is not None:
        raise ValueError("ACC takes exactly one argument, the access level")
    options = []
    for key, value in command.options:
        flag = values.unquote(value).lower()
        if key.lower() not in ("stealth", "exclusive") or flag not in ("true", "false"):
            raise ValueError(f"ACC option -{key}={value} is not -stealth or -exclusive true/false")
        options.append((key.lower(), flag))
    return AccessLevel.parse(values.unquote(command.args[0])), tuple(options)


def _access(command: Command, context: Context) -> Verdict:
    try:
        wanted, options = access_request(command)
    except ValueError as exc:
        return Denied(
            required=AccessLevel.GUEST, command=ACCESS, reason=str(exc), refusal="InvocationError"
        )
    if wanted > context.grant:
        return Denied(
            required=wanted,
            command=ACCESS,
            reason=f"Access level {wanted.label} exceeds limit {context.grant.label}",
            refusal="AccessLevelExceeded",
        )
    if any(flag == "true" for _, flag in options):
        return Allowed(required=AccessLevel.GUEST, sets_level=wanted)
    return Answered(
        command=ACCESS,
        reason=f"within grant {context.grant.label}; the instrument follows ahead of the next "
        "command it is sent",
        sets_level=wanted,
    )
