"""The session filter: what the gateway does with each message of one client session. No I/O.

Theory of operation
-------------------
The client speaks to the gateway as if it were the instrument. Each complete command from the
client is parsed by the `scpi` core and then either answered here or forwarded:

- `CHAL?` / `AUTH` are answered here: the client's identity comes from its certificate, and the
  instrument's password stays with the gateway (which logged in upstream before the session began).
- `ACC <level>` is answered here: above the grant with `AccessLevelExceeded`; up to it the session
  level changes at once, and the instrument's own level follows ahead of the next command it is
  sent (an `ACC` of the gateway's own, in the same write; the instrument runs commands in order,
  so none runs at a level the session does not have). A session that stops asking the instrument
  for anything costs it no `ACC` at all. If the instrument refuses to follow, the session ends
  (`broken`). `ACC` asking for stealth or exclusive access is forwarded instead, and its level
  applies when the instrument says OK. `ACC?` reports the session level from here.
- Every command, these included, is judged first by the one judge (`scpi.judge.judge`) in the
  session's context (level, grant, identity, instrument): its own name and every command nested
  in it at any depth, by the same rule, under the LABGATE table; a session-state command nested
  is refused at every level. Denied: answered here (`InsufficientAccess`, `AccessLevelExceeded`
  or `InvocationError`, with the reason), and the instrument never sees it. Answered: the cases
  above. Allowed: the parsed command is serialised again and forwarded, so what was checked is
  exactly what is sent.

Towards the instrument the gateway numbers commands itself (its login used the first idents), and
maps each reply's ident back to the client's: that protocol state (idents, pending replies, reply
rewriting, the fast head parse) is `scpi.exchange.Exchange`, sans-IO; every reply, read on the
fast path or parsed, reaches the policy here by one path (`_relayed`). A reply whose ident the
gateway did not send is dropped, as the real client does. `MESSage` lines pass through unchanged:
the upstream connection belongs to this session alone, so every message on it is one this session
subscribed to.

When the gateway keeps warm connections (`keep_upstream`), one may serve another session later,
so the filter also notes anything that could carry over (`unclean`): a subscription, a request
for stealth or exclusive access, a nested `$(...)` command (which may do either), and anything
unexpected from the instrument. A QUIT with no command awaiting a reply is then answered here, so
the logged-in connection survives the session; `reusable` says whether it may go back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum

from labgate.scpi import sensitive
from labgate.scpi.access import AccessLevel, Allowed, Denied
from labgate.scpi.errors import ParseError
from labgate.scpi.exchange import COMMAND_HEAD, Exchange, Pending, Reply
from labgate.scpi.judge import Answered, Context, access_request, judge
from labgate.scpi.messages import (
    Command,
    Error,
    Ok,
    Options,
    parse_command,
    serialise,
)
from labgate.scpi.names import canonical

ACC = canonical("ACC")
ACC_QUERY = canonical("ACC?")
CHAL_QUERY = canonical("CHAL?")
AUTH = canonical("AUTH")
QUIT = canonical("QUIT")
# Commands that change what the instrument sends this connection unasked (MESSage events).
SUBSCRIPTION_PREFIXES = ("SUBS", "UNS")


class Decision(StrEnum):
    ALLOWED = "allowed"  # forwarded to the instrument
    ANSWERED = "answered"  # answered by the gateway itself (CHAL?, AUTH, ACC?, ACC)
    DENIED = "denied"  # refused by policy; the instrument never saw it
    MALFORMED = "malformed"  # not a command the core can parse; never forwarded


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A command body, as the audit log records it: size and digest, never content."""

    size: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What to do with one client command, and what the audit log and metrics say about it."""

    decision: Decision
    reason: str
    command: str  # canonical name, or "" when malformed
    args: tuple[str, ...] = ()
    payload: Payload | None = None
    to_client: bytes = b""
    to_upstream: bytes = b""


# One reply from the instrument, rewritten for the client (no parts: nothing to send); the parts
# are written in order, a big body as one part, a view of the bytes as received.
Relayed = Reply


# What a connection has right after the gateway's login: the instrument starts every connection at
# Guest, neither stealthy nor exclusive (AUTH raises only the ceiling, not the level).
BASELINE_LEVEL = AccessLevel.GUEST
# The gateway's own ACC for each level, its ident to fill in.
_LEVEL_COMMANDS = {
    level: b"%%d ACC -stealth=false -exclusive=false %s\n" % level.label.encode()
    for level in AccessLevel
}


class SessionFilter:
    """Per-session policy over the connection's protocol state (`scpi.exchange.Exchange`: idents,
    pending replies, reply rewriting). `next_ident` continues after login."""

    __slots__ = (
        "_exchange",
        "_judged_in",
        "broken",
        "grant",
        "identity",
        "instrument",
        "keep_upstream",
        "level",
        "limit_reason",
        "quit",
        "unclean",
        "upstream_level",
    )

    def __init__(
        self,
        *,
        grant: AccessLevel,
        next_ident: int = 0,
        limit_reason: str = "",
        level: AccessLevel = AccessLevel.GUEST,
        keep_upstream: bool = False,
        upstream_level: AccessLevel | None = BASELINE_LEVEL,
        identity: str = "",
        instrument: str = "",
    ) -> None:
        self.grant = grant  # the session's highest level: its grant, or less (`limit_reason`)
        self.limit_reason = limit_reason  # why `grant` is below the identity's grant
        self.level = level
        self.keep_upstream = keep_upstream  # a clean connection may serve a later session
        self.unclean = ""  # why the connection must not serve another session ("" if it may)
        self.quit = False  # the client said QUIT and the gateway answered it
        self.broken = ""  # why the session cannot go on (a level the instrument refused to take)
        # The instrument's level on this connection as the gateway set it (None: not known, as
        # on a connection an earlier session used); a command goes out only after it equals
        # `level`.
        self.upstream_level = upstream_level
        # Who asks of which instrument: part of every verdict's context (see `judge.Context`).
        self.identity = identity
        self.instrument = instrument
        self._exchange = Exchange(next_ident)
        self._judged_in: Context | None = None  # the context of the last verdict

    def __repr__(self) -> str:
        return (
            f"SessionFilter(grant={self.grant.label}, level={self.level.label}, "
            f"upstream_level={self.upstream_level}, next_ident={self.next_ident}, "
            f"pending={len(self._exchange.pending)}, unclean={self.unclean!r})"
        )

    @property
    def next_ident(self) -> int:
        """The ident the next command on the connection goes out under."""
        return self._exchange.next_ident

    def context(self) -> Context:
        """What the next command is judged in: the session's level and grant as they are now."""
        context = self._judged_in
        if context is None or context.level is not self.level or context.grant is not self.grant:
            context = self._judged_in = Context(
                level=self.level,
                grant=self.grant,
                instrument=self.instrument,
                identity=self.identity,
            )
        return context

    @property
    def reusable(self) -> bool:
        """No command awaits a reply and nothing that could carry over was sent or received."""
        return self.keep_upstream and not self.unclean and not self._exchange.pending

    def _taint(self, why: str) -> None:
        if not self.unclean:
            self.unclean = why

    def unanswered(self) -> list[int]:
        """The client's idents of its commands still waiting for the instrument's reply."""
        return [
            p.client_ident for p in self._exchange.pending.values() if p.client_ident is not None
        ]

    @property
    def awaiting_level(self) -> bool:
        """An ACC is on its way to the instrument: later commands must wait for its answer, or
        they would be judged at the old level."""
        return any(p.sets_level is not None for p in self._exchange.pending.values())

    def from_client(self, raw: bytes, *, now: float) -> Verdict:
        try:
            ident, known = _known(raw)
        except ParseError as exc:
            reply = Error(ident=0, error_class="InvocationError", fields=(), message=one_line(exc))
            reason = str(exc)
            if sensitive.may_bear_secret(raw):  # the parser's excerpt may hold a password
                reason = (
                    "not a command the gateway can read (details withheld: it may carry a secret)"
                )
            return Verdict(
                decision=Decision.MALFORMED,
                reason=reason,
                command="",
                to_client=serialise(reply),
            )
        context = self._judged_in
        if context is None or context.level is not self.level or context.grant is not self.grant:
            context = self.context()
        verdict = known.verdict(context)
        if isinstance(verdict, Denied):
            # The client hears the reason it caused; the audit log keeps none of a secret.
            reason = _withheld(verdict, self.level) if known.secret else verdict.reason
            if verdict.refusal == "AccessLevelExceeded" and self.limit_reason:
                reason = f"{reason}: {self.limit_reason}"  # why the limit is below the grant
            return self._verdict(
                known, Decision.DENIED, reason, to_client=self._refusal(ident, verdict)
            )
        name = known.canonical
        if isinstance(verdict, Answered):
            if verdict.sets_level is not None:  # ACC within the grant
                self.level = verdict.sets_level
                return self._answer(ident, known, "", verdict.reason)
            if name == CHAL_QUERY:
                return self._answer(ident, known, _challenge(), verdict.reason)
            if name == ACC_QUERY:
                text = f"-stealth=False -exclusive=False {self.level.label}"
                return self._answer(ident, known, text, verdict.reason)
            return self._answer(ident, known, "", verdict.reason)
        if verdict.sets_level is not None:  # ACC asking for stealth or exclusive access
            self._taint("stealth or exclusive access was asked for")
            # Forwarded as built from the request, not as received: the instrument would expand
            # a `$(...)` in any other argument.
            self.upstream_level = None  # known again when the instrument says OK
            reason = f"within grant {self.grant.label}"
            return self._forward(
                ident, known, known.access_tail(), now, reason=reason, sets=verdict.sets_level
            )
        if name == QUIT and self.keep_upstream and not self._exchange.pending:
            self.quit = True
            reason = "session ended here; the instrument connection stays"
            return self._answer(ident, known, "", reason)
        return self._forward(ident, known, None, now, reason=f"needs {verdict.required.label}")

    def _refusal(self, ident: int, denied: Denied) -> bytes:
        """The ERRor a denied command is answered with; the decision's own reason goes to the
        audit log, the client gets it on one line."""
        if denied.refusal == "InsufficientAccess":
            return _insufficient(ident, denied.required, self.level, denied.reason)
        fields: Options = ()
        message = denied.reason
        if denied.refusal == "AccessLevelExceeded":
            fields = (("accessLimit", _quoted(self.grant)),)
            message = self.limit_reason or message  # the instrument's limit, not the grant's
        error = Error(
            ident=ident, error_class=denied.refusal, fields=fields, message=one_line(message)
        )
        return serialise(error)

    def from_upstream(self, raw: bytes) -> Relayed:
        """One instrument message, rewritten for the client (see `_relayed`, inlined here: this
        runs for every reply)."""
        reply = self._exchange.receive(raw)
        if reply.stray:
            self._taint(reply.stray)
        elif reply.ended is not None and (
            reply.ended.sets_level is not None or reply.ended.must_succeed
        ):
            self._settle(reply.ended, ok=reply.ok)
        return reply

    def start_long_reply(self, first: bytes) -> Relayed | None:
        """The first piece of a reply too long to hold (see `upstream.STREAM_OVER`): when it is
        a canonical ASCII OK/WARNing to a client's command, the rewritten start to send now (the
        caller sends the rest as it comes, then b"\n"); else None, and the caller gathers the
        whole reply for `from_upstream`."""
        reply = self._exchange.start_long(first)
        return None if reply is None else self._relayed(reply)

    def _relayed(self, reply: Reply) -> Relayed:
        """The one path for replies, however they were read: what a reply changes for the
        session; the client is sent its parts."""
        if reply.stray:
            self._taint(reply.stray)
        elif reply.ended is not None and (
            reply.ended.sets_level is not None or reply.ended.must_succeed
        ):
            self._settle(reply.ended, ok=reply.ok)
        return reply

    def _settle(self, pending: Pending, *, ok: bool) -> None:
        """What the final reply to `pending` changes, whichever way the reply came."""
        if ok and pending.sets_level is not None:
            # An ACC the instrument agreed to. The session gets at most its grant as it is now:
            # the grant may have been lowered while the ACC was on its way.
            self.level = min(pending.sets_level, self.grant)
            # The instrument took the level asked for, unless an ACC of the gateway's, sent after
            # this one, has moved it since; when in doubt, or when it is above the session now,
            # it is not known, and the next command goes out behind an ACC that sets the level.
            later = any(
                p.command == ACC and p.client_ident is None for p in self._exchange.pending.values()
            )
            known = not later and pending.sets_level == self.level
            self.upstream_level = self.level if known else None
        if pending.must_succeed and not ok:
            self.broken = pending.must_succeed
            self._taint(pending.must_succeed)

    def lower_grant(self, grant: AccessLevel, *, now: float) -> bytes:
        """Apply a lowered grant at once; return the command that lowers the instrument, if any."""
        self.grant = grant
        if self.level <= grant:
            return b""
        self.level = grant
        return self._instrument_to(grant, now)

    def _instrument_to(self, level: AccessLevel, now: float, *, must_succeed: str = "") -> bytes:
        """The gateway's own ACC that brings the instrument to `level` (stealth and exclusive
        off); with `must_succeed`, the session ends (`broken`) if the instrument refuses it."""
        ident = self._exchange.take(
            Pending(client_ident=None, command=ACC, sent_at=now, must_succeed=must_succeed)
        )
        self.upstream_level = level
        return _LEVEL_COMMANDS[level] % ident

    def _forward(
        self,
        client_ident: int,
        known: _Known,
        tail: bytes | None,
        now: float,
        *,
        reason: str,
        sets: AccessLevel | None = None,
    ) -> Verdict:
        if known.taints:
            self._taint(known.taints)
        ahead = b""
        if sets is None and self.upstream_level is not self.level:
            # The instrument follows the session to its level just ahead of this command.
            refused = f"the instrument refused to take the session's level {self.level.label}"
            ahead = self._instrument_to(self.level, now, must_succeed=refused)
        ident = self._exchange.take(
            Pending(
                client_ident=client_ident, command=known.logged_name, sent_at=now, sets_level=sets
            )
        )
        sent = known.forwarded(ident) if tail is None else b"%d %s" % (ident, tail)
        out = ahead + sent if ahead else sent
        return self._verdict(known, Decision.ALLOWED, reason, to_upstream=out)

    def _answer(self, ident: int, known: _Known, text: str, reason: str) -> Verdict:
        reply = b"OK %d\n" % ident if not text else serialise(Ok(ident=ident, text=text))
        return self._verdict(known, Decision.ANSWERED, reason, to_client=reply)

    def _verdict(
        self,
        known: _Known,
        decision: Decision,
        reason: str,
        *,
        to_client: bytes = b"",
        to_upstream: bytes = b"",
    ) -> Verdict:
        payload = None
        body = known.command.body
        if body is not None and not known.secret:  # a digest of a short secret is no secret
            content = body.content.encode()
            payload = Payload(size=len(content), sha256=hashlib.sha256(content).hexdigest())
        return Verdict(
            decision=decision,
            reason=reason,
            command=known.logged_name,
            args=known.logged_args,
            payload=payload,
            to_client=to_client,
            to_upstream=to_upstream,
        )


class _Known:
    """A client command as parsed once, without its ident: what judging and forwarding it needs.

    Parsing and judging are pure functions of a command's bytes and of the judge's `Context`, so
    a command the gateway has seen before, in any session, is recognised by its bytes after the
    ident and not parsed again: qslib sends the same few commands on every connection. Only
    short commands without a body are kept (`_KNOWN`), and a verdict is worked out by `judge`
    the first time it is asked for in a context, and kept under the whole context."""

    __slots__ = (
        "_access_tail",
        "_tail",
        "_verdicts",
        "canonical",
        "command",
        "logged_args",
        "logged_name",
        "secret",
        "taints",
    )

    def __init__(self, command: Command) -> None:
        self.command = command
        self.canonical = command.canonical
        body = None if command.body is None else command.body.content
        self.secret = sensitive.bears_secret(command.name, command.options, command.args, body)
        self.logged_args = _logged_args(command, secret=self.secret)
        # What the audit log calls it: a secret-bearing name not written out plainly may hold
        # the secret itself (`$(CONF* ... <password> ...)` as a name).
        plain = not self.secret or sensitive.plain_name(command.name)
        self.logged_name = self.canonical if plain else "[name withheld]"
        self._tail: bytes | None = None  # its bytes after "<ident> ", once it is forwarded
        self.taints = ""
        if self.canonical.startswith(SUBSCRIPTION_PREFIXES):
            self.taints = f"{self.canonical} changes what the instrument sends unasked"
        elif _nests_commands(command):
            self.taints = "a nested $(...) command may change the connection's state"
        self._verdicts: dict[Context, Allowed | Denied | Answered] = {}
        self._access_tail: bytes | None = None

    def verdict(self, context: Context) -> Allowed | Denied | Answered:
        verdict = self._verdicts.get(context)
        if verdict is None:
            if len(self._verdicts) >= _VERDICTS_MAX:
                self._verdicts.clear()
            verdict = self._verdicts[context] = judge(self.command, context)
        return verdict

    def forwarded(self, ident: int) -> bytes:
        """Its bytes as forwarded under `ident`: what was judged is exactly what is sent. A
        command with a body (a file) is serialised when it goes, with its ident, and only then."""
        if self.command.body is not None:
            return serialise(replace(self.command, ident=ident))
        if self._tail is None:
            self._tail = serialise(self.command)[2:]  # after "0 ": `command` has ident 0
        return b"%d %s" % (ident, self._tail)

    def access_tail(self) -> bytes:
        """For an ACC the judge allowed: the command to forward after its ident, built from the
        request as read (so nothing else in it reaches the instrument)."""
        if self._access_tail is None:
            wanted, options = access_request(self.command)
            clean = Command(ident=0, name=self.command.name, options=options, args=(wanted.label,))
            self._access_tail = serialise(clean)[2:]
        return self._access_tail


# Verdicts kept per known command: one per context it was judged in (levels x grants, more once a
# rule reads identities); cleared when full, so many identities cannot grow it without bound.
_VERDICTS_MAX = 32
# Commands recognised by their bytes after the ident (see `_Known`); cleared when full.
_KNOWN: dict[bytes, _Known] = {}
_KNOWN_MAX = 4096
_KNOWN_LONGEST = 1024  # bytes of a command worth keeping


def _known(raw: bytes) -> tuple[int, _Known]:
    """The client's ident and its command, parsed (ParseError) or recognised."""
    head = COMMAND_HEAD.match(raw) if len(raw) <= _KNOWN_LONGEST else None
    if head is not None:
        known = _KNOWN.get(raw[head.end() :])
        if known is not None:
            return int(head.group(1)), known
    command = parse_command(raw)
    known = _Known(replace(command, ident=0))
    if head is not None and command.body is None:
        if len(_KNOWN) >= _KNOWN_MAX:
            _KNOWN.clear()
        _KNOWN[raw[head.end() :]] = known
    return command.ident, known


def _insufficient(ident: int, required: AccessLevel, current: AccessLevel, reason: str) -> bytes:
    fields = (("requiredAccess", _quoted(required)), ("currentAccess", _quoted(current)))
    error = Error(
        ident=ident, error_class="InsufficientAccess", fields=fields, message=one_line(reason)
    )
    return serialise(error)


def _nests_commands(command: Command) -> bool:
    tokens = (*command.args, *(value for _, value in command.options))
    return any("$(" in token for token in tokens)


def _logged_args(command: Command, *, secret: bool) -> tuple[str, ...]:
    """Arguments as the audit log keeps them: a body's path but not its content, and nothing of
    a command that bears a secret (`sensitive.bears_secret`: a login or configuration command,
    at the top or nested), whose arguments may be passwords."""
    if secret:
        return (f"[{len(command.args)} arguments withheld]",) if command.args else ()
    return command.args if command.body is None else command.args[:1]


def _withheld(denied: Denied, level: AccessLevel) -> str:
    """The audit log's reason for refusing a command that carries a secret: the refusal and the
    levels, none of the text (a parser's excerpt or a nested command's source may hold it)."""
    return (
        f"refused ({denied.refusal}; needs {denied.required.label}, the session has "
        f"{level.label}); the details are withheld: the command carries a secret"
    )


def _quoted(level: AccessLevel) -> str:
    # The instrument writes level fields in double quotes (-accessLimit="Observer"); so do we.
    return f'"{level.label}"'


def _challenge() -> str:
    # qslib re-types values that look numeric, so a challenge must hold at least one letter a-f.
    while True:
        text = secrets.token_hex(16)
        if not text.isdigit():
            return text


def one_line(text: object) -> str:
    """A reason fit for an ERRor line: one line, no tag brackets, bounded."""
    return str(text).replace("\n", " ").replace("<", "(").replace(">", ")")[:500]
