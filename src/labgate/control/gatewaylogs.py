"""Gateways' audit logs, received in order: each batch must continue the chain held for it.

A gateway ships the lines of its hash-chained audit log (`labgate.gateway.auditchain`) exactly as
they are in its file, in order, in batches, starting after the head this server holds. A batch is
taken whole or refused whole, and every line is checked:

- on its own, as `labgate audit verify` checks it: canonical JSON, chain fields, its own digest;
- against the line before it: `seq` one more, `prev` the SHA-256 of that line's bytes; for the
  batch's first new line, the line before is the head held here.

So what this server holds of a gateway's log is always a verified prefix of it, and a log cut
short or rewritten on the gateway's host can no longer continue it:

- a gap (the batch starts past the head + 1): records are missing; refused, `audit_gap`;
- a fork (a record at a seq already held with other bytes, or a next record whose `prev` is not
  the head): the log was rewritten or cut back and written on; refused, `audit_fork`;
- another log (a new `log-start` while the held one was never closed): the file was replaced;
  refused, `audit_log_replaced`. A new log after a clean `log-stop` is the normal end of one log
  and the start of the next (a log moved aside by its operator) and is taken.

Each refusal names the seq and the hashes held and sent, is kept on the gateway's head until a
batch is taken again (`divergence`, shown by `GET /api/v1/audit/gateways`) and is recorded as a
control audit event once per distinct divergence. A batch sent again after its answer was lost
overlaps what is held byte for byte: the overlap is skipped, and the answer is the same head.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labgate.control import audit
from labgate.control.errors import ChainRefused, Conflict, InvalidInput, NotFound, RecordInvalid
from labgate.control.tables import GatewayAuditHead, GatewayAuditRecord
from labgate.control.transactions import keep_on_error
from labgate.gateway.auditchain import (
    START_EVENT,
    STOP_EVENT,
    Broken,
    ParsedLine,
    genesis_hash,
    read_line,
)

# Lines per batch: what one transaction inserts (and one request body carries, see the edge).
MAX_BATCH_RECORDS = 1000
# Records that belong to a gateway run's numbered connection (`conn`): a session's records.
RUN_EVENT = "gateway_start"
_LOG_ID_LENGTH = 64
_COLUMN_LIMITS = {"identity": 200, "instrument": 100, "command": 64, "source": 64}


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """Where a gateway's chain stands here (None fields: nothing received yet)."""

    gateway: str
    log_id: str | None
    seq: int | None
    hash: str | None
    last_time: datetime | None = None
    closed: bool = False
    records: int = 0
    received_at: datetime | None = None
    divergence: dict[str, object] | None = None
    divergence_at: datetime | None = None

    def public(self) -> dict[str, object]:
        return {
            "gateway": self.gateway,
            "log_id": self.log_id,
            "seq": self.seq,
            "hash": self.hash,
            "last_time": self.last_time.isoformat() if self.last_time else None,
            "closed": self.closed,
            "records": self.records,
            "received_at": self.received_at.isoformat() if self.received_at else None,
            "divergence": self.divergence,
            "divergence_at": self.divergence_at.isoformat() if self.divergence_at else None,
        }


def head(session: Session, gateway: str) -> Head:
    row = session.get(GatewayAuditHead, gateway)
    if row is None:
        return Head(gateway=gateway, log_id=None, seq=None, hash=None)
    return _head(row)


def heads(session: Session) -> list[Head]:
    rows = session.scalars(select(GatewayAuditHead).order_by(GatewayAuditHead.gateway))
    return [_head(row) for row in rows]


def _head(row: GatewayAuditHead) -> Head:
    return Head(
        gateway=row.gateway,
        log_id=row.log_id,
        seq=row.seq,
        hash=row.hash,
        last_time=row.last_time,
        closed=row.closed,
        records=row.records,
        received_at=row.received_at,
        divergence=json.loads(row.divergence) if row.divergence else None,
        divergence_at=row.divergence_at,
    )


def release(session: Session, gateway: str, *, by: str, reason: str, now: datetime) -> Head:
    """An administrator ends the log held for `gateway` as it stands, so that the gateway's next
    new log is taken: for a log that can never reach its `log-stop` (its last line cut by a
    crash, the file moved aside by its operator). What is held stays; the release is recorded."""
    row = session.get(GatewayAuditHead, gateway, with_for_update=True)
    if row is None:
        raise NotFound(f"this server holds no audit log of gateway {gateway!r}")
    reason = reason.strip()
    if not reason or len(reason) > 500:
        raise InvalidInput("a release needs a reason of 1 to 500 characters")
    audit.record(
        session, at=now, kind="gateway.audit_released", subject=f"labgate:gateway:{gateway}",
        by=by, reason=reason, log_id=row.log_id, seq=row.seq, hash=row.hash, closed=row.closed,
    )  # fmt: skip
    row.closed = True
    row.divergence, row.divergence_at = None, None
    session.flush()
    return _head(row)


def split_lines(body: bytes) -> list[bytes]:
    """A request body of JSON lines as the lines of the log, each with its b"\\n"."""
    if not body:
        return []
    lines = body.splitlines(keepends=True)
    if len(lines) > MAX_BATCH_RECORDS:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH_RECORDS} records, got {len(lines)}")
    return lines


def receive(
    session: Session, *, gateway: str, log_id: str, lines: Sequence[bytes], now: datetime
) -> Head:
    """Take a batch of gateway `gateway`'s log `log_id`, or refuse all of it (see the module)."""
    if len(log_id) != _LOG_ID_LENGTH or any(c not in "0123456789abcdef" for c in log_id):
        raise InvalidInput(f"log id {log_id[:80]!r} is not 64 lowercase hex digits")
    parsed = _parse_batch(lines)
    row = session.get(GatewayAuditHead, gateway, with_for_update=True)
    try:
        if not parsed:
            return head(session, gateway)
        fresh, base = _continuing(session, row, gateway, log_id, parsed)
    except ChainRefused as refusal:
        _keep_divergence(session, row, gateway, refusal, now=now)
        raise
    if fresh:
        _store(session, row, gateway=gateway, log_id=log_id, base=base, fresh=fresh, now=now)
    elif row is not None and row.divergence is not None:
        row.divergence, row.divergence_at = None, None
    return head(session, gateway)


def _parse_batch(lines: Sequence[bytes]) -> list[ParsedLine]:
    parsed: list[ParsedLine] = []
    for index, raw in enumerate(lines):
        line = read_line(raw if raw.endswith(b"\n") else raw + b"\n")
        if isinstance(line, Broken):
            where: dict[str, object] = {"line": index + 1}
            if parsed:
                where["after_seq"] = parsed[-1].seq
            raise RecordInvalid(
                f"line {index + 1} of the batch is not a record of the log: {line.reason}",
                where=where,
            )
        if parsed and (line.seq != parsed[-1].seq + 1 or line.prev != parsed[-1].hash):
            raise RecordInvalid(
                f"line {index + 1} of the batch (seq {line.seq}) does not follow the line "
                f"before it (seq {parsed[-1].seq}) in the chain",
                where={"line": index + 1, "seq": line.seq, "after_seq": parsed[-1].seq},
            )
        parsed.append(line)
    return parsed


@dataclass(frozen=True, slots=True, kw_only=True)
class _Base:
    """What the first fresh record continues: the run it is in, and whether a new log starts."""

    run_seq: int
    new_log: bool


def _continuing(
    session: Session,
    row: GatewayAuditHead | None,
    gateway: str,
    log_id: str,
    parsed: list[ParsedLine],
) -> tuple[list[ParsedLine], _Base]:
    """The records of `parsed` that are new, once the batch is seen to continue the chain."""
    first = parsed[0]
    if row is None or row.log_id != log_id:
        if first.seq != 0:
            held = f"log {row.log_id[:16]} at seq {row.seq}" if row is not None else "nothing"
            raise ChainRefused(
                f"gateway {gateway!r}: this server holds {held} of its audit; log {log_id[:16]} "
                f"must be sent from its start (seq 0), not seq {first.seq}",
                code="audit_gap",
                where=_where(row, sent_seq=first.seq, sent_log=log_id, expected_seq=0),
            )
        _check_start(gateway, log_id, first)
        if row is not None and not row.closed:
            raise ChainRefused(
                f"gateway {gateway!r} began a new audit log ({log_id[:16]}) although its log "
                f"{row.log_id[:16]} never closed (last record held: seq {row.seq}, sha256:"
                f"{row.hash}): the old log was replaced or cut short on the gateway's host",
                code="audit_log_replaced",
                where=_where(row, sent_seq=0, sent_log=log_id, sent_hash=first.hash),
            )
        return parsed, _Base(run_seq=0, new_log=True)
    expected = row.seq + 1
    if first.seq > expected:
        raise ChainRefused(
            f"gateway {gateway!r}: the batch begins at seq {first.seq} but this server holds "
            f"the log up to seq {row.seq}: seq {expected}-{first.seq - 1} are missing",
            code="audit_gap",
            where=_where(row, sent_seq=first.seq, expected_seq=expected),
        )
    overlap = [line for line in parsed if line.seq <= row.seq]
    if overlap:
        _check_overlap(session, row, gateway, overlap)
    fresh = parsed[len(overlap) :]
    if fresh and fresh[0].prev != row.hash:
        raise ChainRefused(
            f"gateway {gateway!r}: record seq {fresh[0].seq} does not continue the chain held "
            f"here: its prev is sha256:{fresh[0].prev}, the record held at seq {row.seq} hashes "
            f"to sha256:{row.hash} (the log was rewritten or cut back on the gateway's host)",
            code="audit_fork",
            where=_where(row, sent_seq=fresh[0].seq, sent_prev=fresh[0].prev),
        )
    return fresh, _Base(run_seq=row.run_seq, new_log=False)


def _check_start(gateway: str, log_id: str, first: ParsedLine) -> None:
    record = first.record
    if record.get("event") != START_EVENT or record.get("log_id") != log_id:
        raise RecordInvalid(
            f"gateway {gateway!r}: seq 0 of log {log_id[:16]} is not that log's log-start",
            where={"line": 1, "seq": 0},
        )
    if first.prev != genesis_hash(log_id):
        raise RecordInvalid(
            f"gateway {gateway!r}: the log-start's prev does not derive from its log id",
            where={"line": 1, "seq": 0},
        )


def _check_overlap(
    session: Session, row: GatewayAuditHead, gateway: str, overlap: list[ParsedLine]
) -> None:
    """A batch sent again: every record it shares with what is held must be the same bytes."""
    rows = session.execute(
        select(GatewayAuditRecord.seq, GatewayAuditRecord.hash).where(
            GatewayAuditRecord.gateway == gateway,
            GatewayAuditRecord.log_id == row.log_id,
            GatewayAuditRecord.seq.between(overlap[0].seq, overlap[-1].seq),
        )
    )
    held: dict[int, str] = {seq: digest for seq, digest in rows}
    for line in overlap:
        if held.get(line.seq) != line.hash:
            raise ChainRefused(
                f"gateway {gateway!r}: record seq {line.seq} differs from the one held here "
                f"(held sha256:{held.get(line.seq)}, sent sha256:{line.hash}): the log was "
                f"rewritten on the gateway's host",
                code="audit_fork",
                where=_where(
                    row, sent_seq=line.seq, sent_hash=line.hash, held_hash=held.get(line.seq)
                ),
            )


def _where(row: GatewayAuditHead | None, **sent: object) -> dict[str, object]:
    where: dict[str, object] = {
        "held_log": row.log_id if row is not None else None,
        "held_seq": row.seq if row is not None else None,
        "held_head": row.hash if row is not None else None,
    }
    where.update(sent)
    return where


def _keep_divergence(
    session: Session,
    row: GatewayAuditHead | None,
    gateway: str,
    refusal: ChainRefused,
    *,
    now: datetime,
) -> None:
    """Keep the refusal on the head, and in the control audit once per distinct divergence;
    committed although the request fails."""
    if row is None:
        return  # nothing held: nothing diverges yet (the gateway is told to start at seq 0)
    detail = {"code": refusal.code, "message": str(refusal), **refusal.where}
    text = json.dumps(detail, sort_keys=True)
    if row.divergence == text:
        return  # the same refusal again (a shipper retrying): recorded once
    row.divergence, row.divergence_at = text, now
    audit.record(
        session, at=now, kind="gateway.audit_refused", subject=f"labgate:gateway:{gateway}",
        **detail,
    )  # fmt: skip
    keep_on_error(session)


def _store(
    session: Session,
    row: GatewayAuditHead | None,
    *,
    gateway: str,
    log_id: str,
    base: _Base,
    fresh: list[ParsedLine],
    now: datetime,
) -> None:
    run_seq = base.run_seq
    values: list[dict[str, object]] = []
    sources: dict[str, str | None] = {}  # a session's client address, from its first record
    for line in fresh:
        if line.record.get("event") == RUN_EVENT:
            run_seq = line.seq
        value = indexed(line, gateway=gateway, log_id=log_id, run_seq=run_seq)
        key = value["session"]
        if isinstance(key, str):
            # A session's later records name no peer: they are searched by its connect's.
            if value["source"] is None:
                if key not in sources:
                    sources[key] = session.scalar(
                        select(GatewayAuditRecord.source)
                        .where(GatewayAuditRecord.session == key)
                        .order_by(GatewayAuditRecord.seq)
                        .limit(1)
                    )
                value["source"] = sources[key]
            else:
                sources.setdefault(key, str(value["source"]))
        values.append(value)
    try:
        with session.begin_nested():
            session.execute(insert(GatewayAuditRecord), values)
    except IntegrityError:
        # Another request of the same gateway took these seqs first (only one shipper should
        # run per gateway): the chain is not in doubt, the request is to be sent again.
        raise Conflict(
            f"gateway {gateway!r}: records seq {fresh[0].seq}-{fresh[-1].seq} were taken by "
            f"another batch meanwhile; ask for the head and send again"
        ) from None
    last = fresh[-1]
    state = {
        "log_id": log_id,
        "seq": last.seq,
        "hash": last.hash,
        "last_time": values[-1]["at"],
        "closed": last.record.get("event") == STOP_EVENT,
        "run_seq": run_seq,
        "received_at": now,
        "divergence": None,
        "divergence_at": None,
    }
    if row is None:
        session.add(GatewayAuditHead(gateway=gateway, records=len(fresh), **state))
        session.flush()
        return
    done = session.execute(
        update(GatewayAuditHead)
        .where(
            GatewayAuditHead.gateway == gateway,
            GatewayAuditHead.log_id == row.log_id,
            GatewayAuditHead.seq == row.seq,
        )
        .values(records=GatewayAuditHead.records + len(fresh), **state)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"gateway {gateway!r}: another batch moved the head meanwhile; send again")
    session.expire(row)


def indexed(line: ParsedLine, *, gateway: str, log_id: str, run_seq: int) -> dict[str, object]:
    """The row of one record: its line and the fields the trail is searched by."""
    record = line.record
    event = _text(record.get("event"), 64) or "?"
    command = _text(record.get("command"), _COLUMN_LIMITS["command"])
    decision = _text(record.get("decision"), 16)
    if decision is None and event in ("refused", "handshake_failure"):
        decision = "refused"
    conn = record.get("conn")
    session = f"{gateway}:{log_id[:16]}:{run_seq}:{conn}" if type(conn) is int else None
    return {
        "gateway": gateway,
        "log_id": log_id,
        "seq": line.seq,
        "hash": line.hash,
        "at": _time(record.get("time"), line.seq),
        "event": event,
        "identity": _text(record.get("identity"), _COLUMN_LIMITS["identity"]),
        "instrument": _text(record.get("instrument"), _COLUMN_LIMITS["instrument"]),
        "command": command.upper() if command else None,
        "decision": decision,
        "source": source_address(record.get("peer")),
        "session": session,
        "line": line.body.decode("utf-8"),
    }


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _time(value: object, seq: int) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise RecordInvalid(
            f"record seq {seq} has time {value!r}, not an RFC 3339 time", where={"seq": seq}
        ) from None
    if when.tzinfo is None:
        raise RecordInvalid(f"record seq {seq} has a time without a zone", where={"seq": seq})
    return when


def source_address(peer: object) -> str | None:
    """The client's address without its port: `127.0.0.1:5000` and `[::1]:5000` as the gateway
    writes them; None when the record has none."""
    if not isinstance(peer, str) or not peer or peer == "unknown":
        return None
    if peer.startswith("["):
        host = peer[1 : peer.find("]")] if "]" in peer else peer[1:]
    else:
        host = peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer
    return host[:64] or None
