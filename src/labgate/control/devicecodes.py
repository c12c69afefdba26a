"""Linking by code (RFC 8628), for anything that cannot use the local-network flow.

The device asks for a code pair; a person types the user code, sees which device asked (model,
serial, local address, the public address of its request, when) and approves; the device's poll
with its CSR then gets the enrolment, once.

Guessing a user code is bounded three ways, all in the database and keyed after normalising
what was typed (case, dashes, spaces):
- per code: the first four letters name the code and the last four check it; an entry that
  names a live code but fails its check counts against that code, and the fifth kills it;
- per public address and per account: every wrong entry counts, a right one resets nothing,
  and past the limit every entry is refused until the window after the last wrong one passes.
Approving and redeeming are compare-and-set (one conditional UPDATE that must touch one row), so
parallel polls of one approved code yield exactly one enrolment, and an approval cannot bring a
redeemed or expired code back.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from labgate.auth import codes
from labgate.auth.decisions import Denied
from labgate.auth.errors import MalformedCode
from labgate.control import audit, throttling
from labgate.control.addresses import local_address_problem
from labgate.control.devices import new_device_id
from labgate.control.enrolment import enrol, may_link
from labgate.control.errors import (
    AccountLocked,
    Conflict,
    DeviceGrantRefused,
    Forbidden,
    InvalidInput,
    NotFound,
    Throttled,
)
from labgate.control.principals import device_identity, user_identity
from labgate.control.runtime import Runtime
from labgate.control.schemas import DEVICE_CODE_GRANT, DeviceCodeRequest, Enrolment
from labgate.control.settings import ControlSettings
from labgate.control.tables import DeviceCode, FailedLogins, User
from labgate.control.transactions import keep_on_error

SELECTOR_LENGTH = 4
MAX_WRONG_PER_CODE = codes.MAX_CODE_ATTEMPTS
SLOW_DOWN_STEP = 5
# A poll this much earlier than `interval` is still on time (timers and networks jitter).
POLL_TOLERANCE = timedelta(seconds=1)
ENTRY_ADDRESS = "usercode-address:"
ENTRY_ACCOUNT = "usercode-account:"
ISSUE_ATTEMPTS = 20
# Codes long over are removed this long after they expired (kept a while for the audit's sake).
FORGET_AFTER = timedelta(days=1)


def create(
    session: Session,
    settings: ControlSettings,
    body: DeviceCodeRequest,
    *,
    public_address: str,
    now: datetime,
) -> tuple[DeviceCode, str, str]:
    """A new device authorisation: the row, the device code and the user code (canonical)."""
    if body.local_address is not None:
        problem = local_address_problem(body.local_address)
        if problem is not None:
            raise InvalidInput(problem)
    window = timedelta(seconds=settings.device_code_wrong_window_seconds)
    recent = session.scalar(
        select(func.count())
        .select_from(DeviceCode)
        .where(DeviceCode.public_address == public_address, DeviceCode.created_at > now - window)
    )
    if (recent or 0) >= settings.device_codes_per_address:
        raise Throttled(
            f"{recent} device codes were asked for from {public_address} in the last "
            f"{window.total_seconds():.0f} s; at most {settings.device_codes_per_address}",
            retry_after=window.total_seconds(),
        )
    session.execute(delete(DeviceCode).where(DeviceCode.expires_at < now - FORGET_AFTER))
    user_code = _unused_user_code(session, now=now)
    device_code = codes.new_device_code()
    row = DeviceCode(
        device_code_hash=codes.token_digest(device_code),
        selector=user_code[:SELECTOR_LENGTH],
        user_code_hash=codes.token_digest(user_code),
        device_id=new_device_id(),
        model=body.model,
        serial=body.serial,
        hostname=body.hostname,
        local_address=body.local_address,
        public_address=public_address,
        state="pending",
        wrong_entries=0,
        interval=settings.device_code_interval_seconds,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.device_code_seconds),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        at=now,
        kind="device_code.issued",
        subject=device_identity(row.device_id),
        public_address=public_address,
    )
    return row, device_code, user_code


def _unused_user_code(session: Session, *, now: datetime) -> str:
    """A user code whose selector no live code has (so an entry names at most one code)."""
    for _ in range(ISSUE_ATTEMPTS):
        candidate = codes.new_user_code()
        taken = session.scalar(
            select(func.count())
            .select_from(DeviceCode)
            .where(DeviceCode.selector == candidate[:SELECTOR_LENGTH], DeviceCode.expires_at > now)
        )
        if not taken:
            return candidate
    raise Throttled("too many device codes are live at once; try again", retry_after=60.0)


# -- entering a user code ---------------------------------------------------------------------


def _entry_keys(user: User, public_address: str) -> tuple[str, str]:
    return (
        ENTRY_ADDRESS + throttling.source_of(public_address),
        ENTRY_ACCOUNT + user.username,
    )


def _require_entry_allowed(
    session: Session, settings: ControlSettings, keys: tuple[str, str], *, now: datetime
) -> None:
    window = timedelta(seconds=settings.device_code_wrong_window_seconds)
    limits = (settings.device_code_wrong_per_address, settings.device_code_wrong_per_account)
    for key, limit in zip(keys, limits, strict=True):
        row = session.get(FailedLogins, key)
        if row is None or now - row.last_failure_at >= window or row.failures < limit:
            continue
        wait = (window - (now - row.last_failure_at)).total_seconds()
        which = "address" if key.startswith(ENTRY_ADDRESS) else "account"
        raise Throttled(
            f"{row.failures} wrong user codes from this {which}; at most {limit} per "
            f"{window.total_seconds():.0f} s; retry in {wait:.0f} s",
            retry_after=wait,
        )


def _count_wrong(
    session: Session, settings: ControlSettings, keys: tuple[str, str], *, now: datetime
) -> None:
    """One more wrong entry on each key, one upsert each (never read-add-write)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    forgotten = FailedLogins.last_failure_at <= now - timedelta(
        seconds=settings.device_code_wrong_window_seconds
    )
    for key in keys:
        statement = insert(FailedLogins).values(key=key, failures=1, last_failure_at=now)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[FailedLogins.key],
                set_={
                    "failures": case((forgotten, 1), else_=FailedLogins.failures + 1),
                    "last_failure_at": now,
                },
            )
        )


def _entering_person(session: Session, runtime: Runtime, user: User, *, now: datetime) -> None:
    decision = may_link(session, runtime, user, now=now)
    if isinstance(decision, Denied):
        if decision.reason == "account_locked":
            raise AccountLocked(f"cannot approve devices: {decision.detail}", retry_after=60.0)
        raise Forbidden(f"cannot approve devices: {decision.detail}", code="access_denied")


def find_entered(
    session: Session,
    runtime: Runtime,
    user: User,
    typed: str,
    *,
    public_address: str,
    now: datetime,
) -> DeviceCode:
    """The live code a person typed, or a counted refusal (`invalid_user_code`)."""
    settings = runtime.settings
    _entering_person(session, runtime, user, now=now)
    keys = _entry_keys(user, public_address)
    _require_entry_allowed(session, settings, keys, now=now)
    try:
        canonical = codes.normalise_user_code(typed)
    except MalformedCode:
        canonical = ""
    if len(canonical) == codes.USER_CODE_LENGTH:
        found = _compare_charged(session, canonical, now=now)
        if found is not None:
            return found
    _count_wrong(session, settings, keys, now=now)
    audit.record(
        session,
        at=now,
        kind="device_code.wrong_entry",
        subject=user_identity(user.username),
        public_address=public_address,
    )
    keep_on_error(session)  # the counts are the point of refusing
    raise NotFound("no live device code matches what was entered", code="invalid_user_code")


def _compare_charged(session: Session, canonical: str, *, now: datetime) -> DeviceCode | None:
    """The code `canonical` is, comparing only against codes this entry could charge a try to.

    A try is charged to every live pending code the entry names (its first half) before any
    comparison, in one conditional UPDATE, and given back only to the code it matched. So
    however many entries arrive at once, no more than five are ever compared against one code:
    each in flight holds one of its five tries.
    """
    selector = canonical[:SELECTOR_LENGTH]
    charged = set(
        session.scalars(
            update(DeviceCode)
            .where(
                DeviceCode.selector == selector,
                DeviceCode.state == "pending",
                DeviceCode.expires_at > now,
                DeviceCode.wrong_entries < MAX_WRONG_PER_CODE,
            )
            .values(wrong_entries=DeviceCode.wrong_entries + 1)
            .returning(DeviceCode.id)
        ).all()
    )
    decided = select(DeviceCode).where(
        DeviceCode.selector == selector,
        DeviceCode.expires_at > now,
        or_(DeviceCode.id.in_(charged), DeviceCode.state.in_(("approved", "denied"))),
    )
    entered = codes.token_digest(canonical)
    for row in session.scalars(decided.execution_options(populate_existing=True)):
        if hmac.compare_digest(row.user_code_hash.encode(), entered.encode()):
            if row.id in charged:
                session.execute(
                    update(DeviceCode)
                    .where(DeviceCode.id == row.id)
                    .values(wrong_entries=DeviceCode.wrong_entries - 1)
                )
                session.refresh(row)
            return row
    return None


def decide(
    session: Session,
    runtime: Runtime,
    user: User,
    typed: str,
    *,
    approve: bool,
    public_address: str,
    now: datetime,
) -> DeviceCode:
    row = find_entered(session, runtime, user, typed, public_address=public_address, now=now)
    moved = session.execute(
        update(DeviceCode)
        .where(
            DeviceCode.id == row.id,
            DeviceCode.state == "pending",
            DeviceCode.expires_at > now,
            DeviceCode.wrong_entries < MAX_WRONG_PER_CODE,
        )
        .values(state="approved" if approve else "denied", approved_by=user.id)
    )
    if getattr(moved, "rowcount", 0) != 1:
        raise Conflict(f"device code for {row.device_id} was already decided or is over")
    session.refresh(row)
    audit.record(
        session,
        at=now,
        kind="device_code.approved" if approve else "device_code.denied",
        subject=device_identity(row.device_id),
        by=user_identity(user.username),
    )
    return row


# -- the device's poll ------------------------------------------------------------------------


def poll(
    session: Session,
    runtime: Runtime,
    *,
    grant_type: str,
    device_code: str,
    csr_pem: str,
    now: datetime,
) -> Enrolment:
    if grant_type != DEVICE_CODE_GRANT:
        raise DeviceGrantRefused(
            f"grant_type must be {DEVICE_CODE_GRANT}", code="unsupported_grant_type"
        )
    row = session.scalar(
        select(DeviceCode).where(DeviceCode.device_code_hash == codes.token_digest(device_code))
    )
    if row is None or row.state == "redeemed":
        raise DeviceGrantRefused("unknown or already redeemed device code", code="invalid_grant")
    if row.expires_at <= now or row.wrong_entries >= MAX_WRONG_PER_CODE:
        raise DeviceGrantRefused("the device code is over; ask for a new one", code="expired_token")
    if row.state == "denied":
        raise DeviceGrantRefused("the person denied this device", code="access_denied")
    if row.state == "pending":
        _pending(session, row, now=now)
    owner = session.get(User, row.approved_by) if row.approved_by is not None else None
    if isinstance(may_link(session, runtime, owner, now=now), Denied) or owner is None:
        raise DeviceGrantRefused(
            "the account that approved this device may not link devices now", code="access_denied"
        )
    redeemed = session.execute(
        update(DeviceCode)
        .where(DeviceCode.id == row.id, DeviceCode.state == "approved")
        .values(state="redeemed")
    )
    if getattr(redeemed, "rowcount", 0) != 1:
        raise DeviceGrantRefused("unknown or already redeemed device code", code="invalid_grant")
    return enrol(
        session,
        runtime,
        owner=owner,
        device_id=row.device_id,
        name=row.hostname,
        csr_pem=csr_pem,
        via="device_code",
        now=now,
    )


def _pending(session: Session, row: DeviceCode, *, now: datetime) -> None:
    """Not approved yet: `authorization_pending`, or `slow_down` when polled too soon."""
    on_time = session.execute(
        update(DeviceCode)
        .where(
            DeviceCode.id == row.id,
            or_(
                DeviceCode.last_polled_at.is_(None),
                and_(DeviceCode.last_polled_at <= now - _interval_of(row) + POLL_TOLERANCE),
            ),
        )
        .values(last_polled_at=now)
    )
    keep_on_error(session)
    if getattr(on_time, "rowcount", 0) == 1:
        raise DeviceGrantRefused("the person has not approved yet", code="authorization_pending")
    session.execute(
        update(DeviceCode)
        .where(DeviceCode.id == row.id)
        .values(interval=DeviceCode.interval + SLOW_DOWN_STEP, last_polled_at=now)
    )
    interval = session.scalar(select(DeviceCode.interval).where(DeviceCode.id == row.id))
    raise DeviceGrantRefused(
        f"polled sooner than every {row.interval} s", code="slow_down", interval=interval
    )


def _interval_of(row: DeviceCode) -> timedelta:
    return timedelta(seconds=row.interval)
