"""The site audit trail: every gateway's shipped records, searched, exported and read as sessions.

Reading the trail is itself on record: each search, export, transcript and session list adds a
control audit event (`trail.viewed`, `trail.exported`) naming the reader and the filters, in the
caller's transaction. Only `READER_ROLES` may read it.

Order and paging: a page is newest first, by (`at`, `id`); the cursor is the last row's pair, so
the next page starts strictly after it whatever arrives meanwhile (keyset paging: no offset to
skip, and every filter has an index ending in (`at`, `id`), see `tables.AUDIT_FILTERS`). An export
is oldest first and bounded, when it starts, by the highest row id then held: it holds exactly the
records that matched at that moment, however long it streams.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from labgate.control import audit
from labgate.control.errors import Forbidden, InvalidInput, NotFound
from labgate.control.tables import GatewayAuditRecord
from labgate.control.transactions import unit_of_work

READER_ROLES = ("admin", "auditor")
MAX_PAGE = 500
EXPORT_CHUNK = 1000  # rows read per query while exporting, and written per chunk
EXPORT_COLUMNS = (
    "id", "gateway", "log_id", "seq", "at", "event", "identity", "instrument", "command",
    "decision", "source", "session", "record",
)  # fmt: skip
DECISIONS = ("allowed", "answered", "denied", "malformed", "refused")
_FILTER_TEXT_LIMIT = 200
# What a spreadsheet would run as a formula at the start of a cell (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailFilter:
    """Which records: every field given must match (exactly; `command` in any case)."""

    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    identity: str | None = None
    instrument: str | None = None
    command: str | None = None
    decision: str | None = None
    source: str | None = None  # the client's IP address, without port
    gateway: str | None = None
    event: str | None = None

    @classmethod
    def parse(cls, **texts: str | None) -> TrailFilter:
        """From query-string values; InvalidInput names the one that is wrong."""
        values: dict[str, Any] = {}
        for name, text in texts.items():
            if name not in _FILTER_NAMES:
                raise InvalidInput(f"unknown filter {name!r}; filters: {', '.join(_FILTER_NAMES)}")
            if text is None or text == "":
                continue
            if len(text) > _FILTER_TEXT_LIMIT:
                raise InvalidInput(f"filter {name} is longer than {_FILTER_TEXT_LIMIT} characters")
            if name in ("since", "until"):
                values[name] = _parse_time(name, text)
            elif name == "decision" and text not in DECISIONS:
                raise InvalidInput(f"decision {text!r} is not one of {', '.join(DECISIONS)}")
            else:
                values[name] = text.upper() if name == "command" else text
        return cls(**values)

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInput(f"filter {name} needs a time zone (e.g. Z)")
        if self.since and self.until and self.since >= self.until:
            raise InvalidInput("filter since must be before until")

    def given(self) -> dict[str, str]:
        """The filters set, as text (for the record of who read what)."""
        out: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                out[item.name] = value.isoformat() if isinstance(value, datetime) else value
        return out

    def clauses(self) -> list[ColumnElement[bool]]:
        row = GatewayAuditRecord
        where: list[ColumnElement[bool]] = []
        if self.since is not None:
            where.append(row.at >= self.since)
        if self.until is not None:
            where.append(row.at < self.until)
        for name in ("identity", "instrument", "command", "decision", "source", "gateway", "event"):
            value = getattr(self, name)
            if value is not None:
                where.append(getattr(row, name) == value)
        return where


_FILTER_NAMES = tuple(item.name for item in fields(TrailFilter))


def _parse_time(name: str, text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"filter {name} {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise InvalidInput(f"filter {name} {text!r} needs a time zone (e.g. Z)")
    return when


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailRecord:
    id: int
    gateway: str
    log_id: str
    seq: int
    at: datetime
    event: str
    identity: str | None
    instrument: str | None
    command: str | None
    decision: str | None
    source: str | None
    session: str | None
    record: Mapping[str, object]

    def public(self) -> dict[str, object]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        out["record"] = dict(self.record)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailPage:
    records: tuple[TrailRecord, ...]
    next_cursor: str | None


def _record(row: GatewayAuditRecord) -> TrailRecord:
    return TrailRecord(
        id=row.id,
        gateway=row.gateway,
        log_id=row.log_id,
        seq=row.seq,
        at=row.at,
        event=row.event,
        identity=row.identity,
        instrument=row.instrument,
        command=row.command,
        decision=row.decision,
        source=row.source,
        session=row.session,
        record=json.loads(row.line),
    )


def require_reader(role: str) -> None:
    if role not in READER_ROLES:
        raise Forbidden(f"reading the audit trail needs one of the roles {READER_ROLES}")


def _cursor(at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, row_id = text.split("|")
        return datetime.fromisoformat(at), int(row_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this server gave (use next_cursor as is)") from None


def _older_than(cursor: str | None) -> list[ColumnElement[bool]]:
    if cursor is None:
        return []
    at, row_id = _after(cursor)
    row = GatewayAuditRecord
    return [or_(row.at < at, and_(row.at == at, row.id < row_id))]


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE}, got {limit}")
    return limit


def search(
    session: Session,
    filters: TrailFilter,
    *,
    reader: str,
    reader_role: str,
    now: datetime,
    after: str | None = None,
    limit: int = 50,
) -> TrailPage:
    """One page of the records that match, newest first."""
    require_reader(reader_role)
    limit = _limit(limit)
    row = GatewayAuditRecord
    query = (
        select(row)
        .where(*filters.clauses(), *_older_than(after))
        .order_by(row.at.desc(), row.id.desc())
        .limit(limit + 1)
    )
    rows = list(session.scalars(query))
    audit.record(
        session, at=now, kind="trail.viewed", subject=reader, filters=filters.given(),
        page=after is not None,
    )  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = _cursor(rows[-1].at, rows[-1].id) if more else None
    return TrailPage(records=tuple(_record(r) for r in rows), next_cursor=cursor)


def export(
    sessions: sessionmaker[Session],
    filters: TrailFilter,
    *,
    fmt: Literal["csv", "jsonl"],
    reader: str,
    reader_role: str,
    now: datetime,
) -> Iterator[bytes]:
    """Every matching record, oldest first, as CSV or JSON lines in chunks. The export is on
    record (committed) before this returns; the rows are read as the chunks are taken."""
    require_reader(reader_role)
    if fmt not in ("csv", "jsonl"):
        raise InvalidInput(f"format {fmt!r} is not csv or jsonl")
    with unit_of_work(sessions) as session:
        ceiling = session.scalar(select(func.max(GatewayAuditRecord.id))) or 0
        audit.record(
            session, at=now, kind="trail.exported", subject=reader, filters=filters.given(),
            format=fmt, up_to_id=ceiling,
        )  # fmt: skip
    return _chunks(sessions, filters, fmt=fmt, ceiling=ceiling)


def _chunks(
    sessions: sessionmaker[Session], filters: TrailFilter, *, fmt: str, ceiling: int
) -> Iterator[bytes]:
    if fmt == "csv":
        yield _csv_rows([list(EXPORT_COLUMNS)])
    row = GatewayAuditRecord
    last: tuple[datetime, int] | None = None
    while True:
        where = [*filters.clauses(), row.id <= ceiling]
        if last is not None:
            where.append(or_(row.at > last[0], and_(row.at == last[0], row.id > last[1])))
        with sessions() as session:
            rows = list(
                session.scalars(
                    select(row).where(*where).order_by(row.at, row.id).limit(EXPORT_CHUNK)
                )
            )
        if not rows:
            return
        last = (rows[-1].at, rows[-1].id)
        if fmt == "csv":
            yield _csv_rows([_csv_cells(r) for r in rows])
        else:
            yield b"".join(_json_line(r) for r in rows)
        if len(rows) < EXPORT_CHUNK:
            return


def _csv_cells(row: GatewayAuditRecord) -> list[str]:
    cells = [
        str(row.id), row.gateway, row.log_id, str(row.seq), row.at.isoformat(), row.event,
        row.identity or "", row.instrument or "", row.command or "", row.decision or "",
        row.source or "", row.session or "", row.line,
    ]  # fmt: skip
    return [csv_safe(cell) for cell in cells]


def csv_safe(cell: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading `'`."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _csv_rows(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _json_line(row: GatewayAuditRecord) -> bytes:
    item = _record(row).public()
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript:
    session: str
    gateway: str
    instrument: str | None
    identity: str | None
    source: str | None
    started: datetime | None
    ended: datetime | None
    end_reason: str | None
    records: tuple[TrailRecord, ...]

    def public(self) -> dict[str, object]:
        return {
            "session": self.session,
            "gateway": self.gateway,
            "instrument": self.instrument,
            "identity": self.identity,
            "source": self.source,
            "started": self.started.isoformat() if self.started else None,
            "ended": self.ended.isoformat() if self.ended else None,
            "end_reason": self.end_reason,
            "records": [r.public() for r in self.records],
        }


def transcript(
    session: Session, session_key: str, *, reader: str, reader_role: str, now: datetime
) -> Transcript:
    """A session's records in the order its gateway wrote them: connect, each command with its
    decision and reply, disconnect."""
    require_reader(reader_role)
    row = GatewayAuditRecord
    rows = list(session.scalars(select(row).where(row.session == session_key).order_by(row.seq)))
    if not rows:
        raise NotFound(f"no audit records of session {session_key[:200]!r}")
    audit.record(session, at=now, kind="trail.viewed", subject=reader, transcript=session_key)
    records = tuple(_record(r) for r in rows)
    first = records[0]
    connect = next((r for r in records if r.event == "connect"), None)
    end = next((r for r in reversed(records) if r.event in ("disconnect", "refused")), None)
    reason = end.record.get("reason") if end is not None else None
    return Transcript(
        session=session_key,
        gateway=first.gateway,
        instrument=first.instrument,
        identity=first.identity,
        source=first.source,
        started=connect.at if connect is not None else first.at,
        ended=end.at if end is not None else None,
        end_reason=reason if isinstance(reason, str) else None,
        records=records,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSummary:
    session: str
    gateway: str
    instrument: str
    identity: str | None
    source: str | None
    started: datetime
    ended: datetime | None
    end_reason: str | None
    commands: int
    refused: int

    def public(self) -> dict[str, object]:
        out = asdict(self)
        out["started"] = self.started.isoformat()
        out["ended"] = self.ended.isoformat() if self.ended else None
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPage:
    sessions: tuple[SessionSummary, ...]
    next_cursor: str | None


def instrument_sessions(
    session: Session,
    instrument: str,
    *,
    reader: str,
    reader_role: str,
    now: datetime,
    after: str | None = None,
    limit: int = 50,
) -> SessionPage:
    """The sessions on `instrument`, newest first, with what happened in each."""
    require_reader(reader_role)
    limit = _limit(limit)
    row = GatewayAuditRecord
    starts = list(
        session.scalars(
            select(row)
            .where(row.instrument == instrument, row.event == "connect", *_older_than(after))
            .order_by(row.at.desc(), row.id.desc())
            .limit(limit + 1)
        )
    )
    audit.record(session, at=now, kind="trail.viewed", subject=reader, instrument=instrument)
    more = len(starts) > limit
    starts = starts[:limit]
    keys = [r.session for r in starts if r.session is not None]
    counts: dict[str, tuple[int, int]] = {}
    ends: dict[str, GatewayAuditRecord] = {}
    if keys:
        refused = func.sum(case((row.decision.in_(("denied", "malformed")), 1), else_=0))
        for key, commands, bad in session.execute(
            select(row.session, func.count(), refused)
            .where(row.session.in_(keys), row.event == "command")
            .group_by(row.session)
        ):
            counts[key] = (int(commands), int(bad or 0))
        for closing in session.scalars(
            select(row).where(row.session.in_(keys), row.event == "disconnect")
        ):
            ends[str(closing.session)] = closing
    summaries = []
    for start in starts:
        key = str(start.session)
        end = ends.get(key)
        reason = json.loads(end.line).get("reason") if end is not None else None
        commands, bad = counts.get(key, (0, 0))
        summaries.append(
            SessionSummary(
                session=key,
                gateway=start.gateway,
                instrument=instrument,
                identity=start.identity,
                source=start.source,
                started=start.at,
                ended=end.at if end is not None else None,
                end_reason=reason if isinstance(reason, str) else None,
                commands=commands,
                refused=bad,
            )
        )
    cursor = _cursor(starts[-1].at, starts[-1].id) if more else None
    return SessionPage(sessions=tuple(summaries), next_cursor=cursor)
