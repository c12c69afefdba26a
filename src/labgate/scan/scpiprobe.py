"""What an instrument's SCPI says to a stranger: its banner, the level it gives without a
password, and whether a weak password authenticates.

Passwords are checked the way the instrument asks for them, by challenge and response: `CHAL?`
gives a challenge, the answer is HMAC-MD5(password, challenge) computed here, and only that answer
goes on the wire (`AUTH <hex>`). No password is ever sent. Nothing is changed on the instrument:
the probe's session asks `ACC` for a level it then gives back, and ends with `QUIT`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from labgate.scan.errors import ScanError
from labgate.scpi.access import AccessLevel
from labgate.scpi.errors import ScpiError
from labgate.scpi.framing import Decoder, Limits
from labgate.scpi.messages import Error, Message, Ok, Ready, Reply, Warning, parse_reply

# Replies here are a few hundred bytes; a banner or reply beyond this is not an instrument's.
MAX_LINE = 16 * 1024

# Weak or commonly used passwords, tried by challenge and response only. No manufacturer default
# is documented for the QuantStudio; these are the guesses an attacker tries first.
WEAK_PASSWORDS: tuple[str, ...] = (
    "",
    "admin",
    "password",
    "quantstudio",
    "QuantStudio",
    "thermo",
    "service",
    "1234",
    "12345678",
    "full",
    "controller",
    "observer",
)


class ScpiProbeError(ScanError):
    """The endpoint did not speak the instrument's SCPI as expected; the message says how."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Banner:
    """The parsed `READy` line: product, firmware version, session (None where not given)."""

    raw: str
    product: str | None
    version: str | None
    build: str | None
    session: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WeakPassword:
    """A weak password that authenticated: shown masked; `level` is the session's ceiling after
    it (at most the password's own level, at least what it raised the session to)."""

    masked: str
    level: AccessLevel | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScpiFacts:
    banner: Banner
    level_at_connect: AccessLevel | None
    password_free_limit: AccessLevel | None  # None: the instrument would not say
    passwords_tried: int = 0
    weak_passwords: tuple[WeakPassword, ...] = field(default_factory=tuple)
    passwords_checked: bool = False


class Channel:
    """Lines over any byte stream: `send(bytes)` and `recv() -> bytes` ("" at the end)."""

    def __init__(self, send: Callable[[bytes], object], recv: Callable[[], bytes]) -> None:
        self._send = send
        self._recv = recv
        self._decoder = Decoder(Limits(max_line=MAX_LINE, max_message=4 * MAX_LINE, max_depth=4))
        self._waiting: list[bytes] = []
        self._ident = 0

    def message(self) -> bytes:
        while not self._waiting:
            data = self._recv()
            if not data:
                raise ScpiProbeError("the endpoint closed the connection")
            try:
                self._waiting.extend(self._decoder.feed(data))
            except ScpiError as exc:
                raise ScpiProbeError(f"not SCPI: {exc}") from None
        return self._waiting.pop(0)

    def ask(self, command: str) -> Reply:
        """Send `<ident> command` and return its final reply (MESSage lines skipped)."""
        ident = self._ident
        self._ident += 1
        self._send(f"{ident} {command}\n".encode())
        while True:
            try:
                reply = parse_reply(self.message())
            except ScpiError as exc:
                raise ScpiProbeError(f"reply not understood: {exc}") from None
            if isinstance(reply, Message):
                continue
            if getattr(reply, "ident", None) == ident and isinstance(reply, (Ok, Error, Warning)):
                return reply


def parse_banner(raw: bytes) -> Banner:
    text = raw.decode("utf-8", "replace").strip()
    try:
        ready = parse_reply(raw.rstrip(b"\n"))
    except ScpiError as exc:
        raise ScpiProbeError(f"banner {text[:60]!r} is not a READy line: {exc}") from None
    if not isinstance(ready, Ready):
        raise ScpiProbeError(f"banner {text[:60]!r} is not a READy line")
    options = dict(ready.options)
    return Banner(
        raw=text[:200],
        product=options.get("product"),
        version=options.get("version"),
        build=options.get("build"),
        session=options.get("session"),
    )


def probe(channel: Channel, first: bytes, *, passwords: Sequence[str] | None = None) -> ScpiFacts:
    """Everything after the banner `first` (already read): level at connect, the password-free
    limit and, if `passwords` are given, which of them authenticate. Ends the session."""
    banner = parse_banner(first)
    at_connect = _level_of(channel.ask("ACC?"))
    limit = _password_free_limit(channel)
    weak: list[WeakPassword] = []
    tried = 0
    if passwords is not None:
        for candidate in passwords:
            tried += 1
            if _authenticates(channel, candidate):
                weak.append(WeakPassword(masked=mask(candidate), level=_ceiling(channel)))
    with contextlib.suppress(ScpiProbeError, OSError):
        channel.ask("QUIT")  # an instrument that hangs up instead of answering still told us
    return ScpiFacts(
        banner=banner,
        level_at_connect=at_connect,
        password_free_limit=limit,
        passwords_tried=tried,
        weak_passwords=tuple(weak),
        passwords_checked=passwords is not None,
    )


def answer(password: str, challenge: str) -> str:
    """The instrument's challenge response: hex HMAC-MD5 keyed by the password."""
    return hmac.new(password.encode(), challenge.encode(), hashlib.md5).hexdigest()


def mask(password: str) -> str:
    if not password:
        return "(empty password)"
    if len(password) <= 2:
        return "*" * len(password)
    return f"{password[0]}{'*' * (len(password) - 2)}{password[-1]} ({len(password)} characters)"


def _authenticates(channel: Channel, password: str) -> bool:
    challenge = channel.ask("CHAL?")
    if not isinstance(challenge, Ok) or not challenge.text.strip():
        raise ScpiProbeError("CHAL? gave no challenge")
    reply = channel.ask(f"AUTH {answer(password, challenge.text.strip())}")
    return isinstance(reply, Ok)


def _password_free_limit(channel: Channel) -> AccessLevel | None:
    """The highest level `ACC` grants this session, learnt without keeping it: ask for Full; the
    refusal names the limit. The session is set back to Guest afterwards."""
    limit = _ceiling(channel)
    channel.ask("ACC Guest")
    return limit


def _ceiling(channel: Channel) -> AccessLevel | None:
    reply = channel.ask("ACC Full")
    if isinstance(reply, Ok):
        channel.ask("ACC Guest")
        return AccessLevel.FULL
    if isinstance(reply, Error):
        named = dict(reply.fields).get("accessLimit")
        if named:
            try:
                return AccessLevel.parse(named.strip('"'))
            except ValueError:
                pass
        # No limit named: walk down until a level is granted.
        for level in (AccessLevel.ADMINISTRATOR, AccessLevel.CONTROLLER, AccessLevel.OBSERVER):
            if isinstance(channel.ask(f"ACC {level.label}"), Ok):
                channel.ask("ACC Guest")
                return level
        return AccessLevel.GUEST
    return None


def _level_of(reply: Reply) -> AccessLevel | None:
    if not isinstance(reply, Ok):
        return None
    words = reply.text.split()
    try:
        return AccessLevel.parse(words[-1]) if words else None
    except ValueError:
        return None
