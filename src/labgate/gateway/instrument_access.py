"""`labgate instrument setup`: the instrument's own access secrets and limits, set to match
labgate's grants, by the gateway's own connection and login, so that the instrument refuses what
the gateway refuses even to someone who reaches it another way.

What it sets: every interface's password-free limit to Guest, and exactly two secrets, both made
here and written 0600 beside the gateway's `password_file`: one at the highest level any grant
gives on this instrument (the file the gateway logs in with, so no session can go above it), and
one at Full (`PASSWORD_FILE.full`), which only this command uses, to run again later. Setup needs
Full on the instrument (its access settings are above every grant), so it is refused unless the
configuration says `unsafe_allow_full = true`.

A dry run (the default) logs in, reads the instrument's settings and prints what would change;
`apply` makes the change: the new secrets are written first (`*.new`), then sent in one
`CONF= access.secrets` (the instrument is never between two sets), then moved into place, then
the limits are set, then a fresh login with the new Full secret reads everything back. Every
step is an audit record; no secret is in a record, a message or an argument vector.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path

from labgate.gateway.audit import AuditLog
from labgate.gateway.config import GatewayConfig, InstrumentConfig, read_secret
from labgate.gateway.errors import GatewayError, SecretFileError, UpstreamError
from labgate.gateway.upstream import UpstreamConnection, connect
from labgate.pki.atomic import sync_directory, write_atomic
from labgate.posture.mode import cap_level
from labgate.scpi.access import AccessLevel
from labgate.scpi.framing import Limits
from labgate.scpi.messages import Command, Error, Next, Ok, Reply, parse_reply, serialise

INTERFACES = ("default", "eth0")
SECRET_BYTES = 24  # 192 bits, as the simulator's own generated passwords
FULL_SUFFIX = ".full"
NEW_SUFFIX = ".new"


class SetupError(GatewayError):
    """`instrument setup` cannot go on; the message says why and what to change."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessState:
    """An instrument's access settings as it reports them (secrets only counted)."""

    limits: tuple[tuple[str, AccessLevel], ...]
    secrets: tuple[tuple[AccessLevel, int], ...]  # levels with at least one secret


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    instrument: str
    now: AccessState
    wanted: AccessState
    new_secrets: bool  # False when the files' secrets already are the instrument's only ones
    operating_level: AccessLevel
    operating_file: Path
    full_file: Path

    @property
    def changes(self) -> bool:
        return self.new_secrets or self.now.limits != self.wanted.limits

    def diff(self) -> str:
        lines = [f"--- {self.instrument} (now)", f"+++ {self.instrument} (after setup)"]
        now, wanted = dict(self.now.limits), dict(self.wanted.limits)
        for interface in INTERFACES:
            old, new = now.get(interface), wanted[interface]
            if old is new:
                lines.append(f" accessLimits.{interface} = {new.label}")
            else:
                shown = old.label if old is not None else "?"
                lines += [
                    f"-accessLimits.{interface} = {shown}",
                    f"+accessLimits.{interface} = {new.label}",
                ]
        current = _secrets_text(self.now.secrets)
        if self.new_secrets:
            lines.append(f"-secrets: {current}")
            lines.append(
                f"+secrets: {self.operating_level.label} x1 (new, in {self.operating_file}), "
                f"Full x1 (new, in {self.full_file})"
            )
        else:
            lines.append(f" secrets: {current} (labgate's own)")
        return "\n".join(lines)


def _secrets_text(counts: tuple[tuple[AccessLevel, int], ...]) -> str:
    return ", ".join(f"{level.label} x{count}" for level, count in counts) or "none"


def highest_grant(config: GatewayConfig, name: str) -> AccessLevel:
    """The most any session may have on `name`: the grants, under the [secure] full cap."""
    levels = [g.level for g in config.grants if g.instrument in (name, "*")]
    return cap_level(config.secure, max(levels, default=AccessLevel.GUEST)).level


def instrument_named(config: GatewayConfig, name: str) -> InstrumentConfig:
    for instrument in config.instruments:
        if instrument.name == name:
            return instrument
    known = ", ".join(i.name for i in config.instruments)
    raise SetupError(f"no [[instrument]] named {name!r} in the configuration (known: {known})")


def files_of(instrument: InstrumentConfig) -> tuple[Path, Path]:
    if instrument.password_file is None:
        raise SetupError(
            f"instrument {instrument.name!r} has no password_file: setup writes the gateway's "
            'new secret there; add password_file = "..." to its [[instrument]] table'
        )
    operating = instrument.password_file
    return operating, operating.with_name(operating.name + FULL_SUFFIX)


async def plan(config: GatewayConfig, name: str) -> Plan:
    """Log in at Full, read the instrument's access settings, and work out what setup changes."""
    instrument = instrument_named(config, name)
    if not config.unsafe_allow_full:
        raise SetupError(
            "setting the instrument's secrets needs Full access to it: "
            "set gateway.unsafe_allow_full = true for the time of the setup"
        )
    operating_file, full_file = files_of(instrument)
    level = max(highest_grant(config, name), AccessLevel.OBSERVER)
    wanted_limits = tuple((interface, AccessLevel.GUEST) for interface in INTERFACES)
    if level is AccessLevel.FULL:
        wanted_secrets: tuple[tuple[AccessLevel, int], ...] = ((AccessLevel.FULL, 2),)
    else:
        wanted_secrets = ((level, 1), (AccessLevel.FULL, 1))
    wanted = AccessState(limits=wanted_limits, secrets=wanted_secrets)
    upstream, used = await _login_at_full(instrument, [full_file, _new(full_file), operating_file])
    try:
        now = await read_state(upstream)
        ours = used == full_file and await _authenticates_at(upstream, operating_file, level)
    finally:
        await upstream.close()
    return Plan(
        instrument=name,
        now=now,
        wanted=wanted,
        new_secrets=not (ours and now.secrets == wanted.secrets),
        operating_level=level,
        operating_file=operating_file,
        full_file=full_file,
    )


async def apply(config: GatewayConfig, chosen: Plan, audit: AuditLog) -> None:
    """Make `chosen`'s change, recording each step; then check it by a fresh login."""
    instrument = instrument_named(config, chosen.instrument)
    name = chosen.instrument
    note = _Notes(audit, name)
    note(
        "begin",
        {"limits": _levels(chosen.wanted.limits), "secrets": _secrets_text(chosen.wanted.secrets)},
    )
    upstream, _ = await _login_at_full(
        instrument, [chosen.full_file, _new(chosen.full_file), chosen.operating_file]
    )
    try:
        if chosen.new_secrets:
            operating, full = _fresh(), _fresh()
            # On disk first, beside the live files: a crash after the instrument took them
            # leaves them where the next run looks.
            write_atomic(_new(chosen.operating_file), operating.encode() + b"\n", mode=0o600)
            write_atomic(_new(chosen.full_file), full.encode() + b"\n", mode=0o600)
            note("secrets_written", {"files": [str(chosen.operating_file), str(chosen.full_file)]})
            await _must(
                upstream,
                "CONF=",
                ("access.secrets", operating, chosen.operating_level.label, full, "Full"),
            )
            note(
                "secrets_set",
                {"levels": [chosen.operating_level.label, "Full"], "secrets": "withheld"},
            )
            _new(chosen.operating_file).replace(chosen.operating_file)
            _new(chosen.full_file).replace(chosen.full_file)
            sync_directory(chosen.operating_file.parent)
        for interface, level in chosen.wanted.limits:
            if dict(chosen.now.limits).get(interface) is level:
                continue
            await _must(upstream, "CONF=", (f"access.accessLimits.{interface}", level.label))
            note("limit_set", {"interface": interface, "level": level.label})
    finally:
        await upstream.close()
    check, _ = await _login_at_full(instrument, [chosen.full_file])
    try:
        after = await read_state(check)
    finally:
        await check.close()
    if after != chosen.wanted:
        note("check_failed", {})
        raise SetupError(f"instrument {name!r} reports {after} after setup, not {chosen.wanted}")
    note("done", {})


async def read_state(upstream: UpstreamConnection) -> AccessState:
    reply = await _must(upstream, "CONF?", ("access",))
    limits: dict[str, AccessLevel] = {}
    counts: dict[AccessLevel, int] = {}
    for word in reply.text.split():
        key, _, value = word.lstrip("-").partition("=")
        try:
            if key.startswith("accessLimits."):
                limits[key.removeprefix("accessLimits.")] = AccessLevel.parse(value)
            elif key.startswith("secrets.") and int(value) > 0:
                counts[AccessLevel.parse(key.removeprefix("secrets."))] = int(value)
        except ValueError:
            raise SetupError(
                f"the instrument's CONF? reply is not understood at {word!r}"
            ) from None
    return AccessState(
        limits=tuple(
            (interface, limits[interface]) for interface in INTERFACES if interface in limits
        ),
        secrets=tuple(sorted(counts.items())),
    )


# -------------------------------------------------------------------------- the plumbing


class _Notes:
    """Audit records of one setup, each on disk before the step after it is taken."""

    def __init__(self, audit: AuditLog, instrument: str) -> None:
        self._audit = audit
        self._instrument = instrument

    def __call__(self, step: str, details: dict[str, object]) -> None:
        event = {"event": "instrument_setup", "instrument": self._instrument, "step": step}
        self._audit.record({**event, **details}, urgent=True)
        self._audit.flush_sync()


def _new(path: Path) -> Path:
    return path.with_name(path.name + NEW_SUFFIX)


def _fresh() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def _levels(pairs: tuple[tuple[str, AccessLevel], ...]) -> dict[str, str]:
    return {key: level.label for key, level in pairs}


async def _login_at_full(
    instrument: InstrumentConfig, candidates: list[Path]
) -> tuple[UpstreamConnection, Path]:
    """The gateway's own connection (pin checked) and login, with the first secret file that
    gives Full; the others are tried in order."""
    tried: list[str] = []
    for path in candidates:
        if not path.exists():
            continue
        login = instrument.model_copy(update={"password_file": path})
        try:
            upstream = await connect(login, limits=Limits())
        except UpstreamError as exc:
            if "password" not in str(exc):
                raise
            tried.append(path.name)
            continue
        reply = await _ask(upstream, "ACC", ("Full",))
        if isinstance(reply, Ok):
            return upstream, path
        tried.append(path.name)
        await upstream.close()
    raise SetupError(
        f"no secret file gives Full on instrument {instrument.name!r} (tried: "
        f"{', '.join(tried) or 'none found'}); put the instrument's Full password in its "
        "password_file for the first setup"
    )


async def _authenticates_at(upstream: UpstreamConnection, path: Path, level: AccessLevel) -> bool:
    """Whether the secret in `path` is one the instrument takes, for exactly `level`."""
    import hashlib
    import hmac

    try:
        secret = read_secret(path, "password_file")
    except SecretFileError:
        return False
    challenge = await _must(upstream, "CHAL?", ())
    answer = hmac.new(secret, challenge.text.strip().encode(), hashlib.md5).hexdigest()
    return isinstance(await _ask(upstream, "AUTH", (answer,)), Ok) and level is not None


async def _must(upstream: UpstreamConnection, name: str, args: tuple[str, ...]) -> Ok:
    reply = await _ask(upstream, name, args)
    if not isinstance(reply, Ok):
        # Named by command only: the arguments may be secrets.
        detail = reply.message if isinstance(reply, Error) else type(reply).__name__
        raise SetupError(f"the instrument refused {name}: {detail}")
    return reply


async def _ask(upstream: UpstreamConnection, name: str, args: tuple[str, ...]) -> Reply:
    ident = upstream.next_ident
    upstream.next_ident += 1
    upstream.writer.write(
        serialise(Command(ident=ident, name=name, options=(), args=args, body=None))
    )
    async with asyncio.timeout(10.0):
        while True:
            messages = await upstream.stream.messages()
            if not messages:
                raise SetupError("the instrument closed the connection")
            upstream.stream.put_back(messages[1:])
            reply = parse_reply(messages[0])
            if getattr(reply, "ident", None) == ident and not isinstance(reply, Next):
                return reply
