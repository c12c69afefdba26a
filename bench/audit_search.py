"""Benchmark of the site audit trail: one-filter searches over many records, SQLite and PostgreSQL.

Builds the schema with the real migrations, bulk-loads synthetic gateway records (loaded without
the secondary indexes, which are then built, as a restore would), and times one page (50 records,
newest first) of `labgate.control.trail.search` for each filter, through the domain function the
API calls (its own audit event included, rolled back). Beside each it times the peer: the same
filter found by scanning the stored lines (`line LIKE '%"identity":"..."%'`), what the search
would cost without the filter columns and their indexes. Also a page 20 pages deep by cursor, and
the export of one filter's records.

    .venv/bin/python bench/audit_search.py                 # 100,000 records, both databases
    .venv/bin/python bench/audit_search.py --records 1000000
    .venv/bin/python bench/audit_search.py --databases sqlite

PostgreSQL comes from LABGATE_TEST_POSTGRES_URL (or --postgres-url); the run uses a schema of its
own and drops it. Every loop is bounded by its repetition count.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from labgate.control import trail
from labgate.control.database import make_engine, migrate
from labgate.control.settings import normalise_database_url
from labgate.control.tables import AUDIT_FILTERS, GatewayAuditRecord

COLUMNS = (
    "id", "gateway", "log_id", "seq", "hash", "at", "event", "identity", "instrument", "command",
    "decision", "source", "session", "line",
)  # fmt: skip
EVENTS = ("command",) * 6 + ("reply",) * 5 + ("connect", "disconnect", "refused")
DECISIONS = ("allowed",) * 20 + ("answered",) * 4 + ("denied", "malformed")
COMMANDS = (*(f"CMD{n:02d}?" for n in range(40)), "RUNTITLE?", "DRAW?", "OPEN", "ACCESS")
REPEAT = 5
RARE = "labgate:user:rare"
START = datetime(2026, 1, 1, tzinfo=UTC)


def synthetic(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """`count` records of 20 gateways, 300 people, 60 instruments and 400 client addresses, one
    about every 3 s, in the shapes the gateway writes."""
    rng = random.Random(seed)
    logs = {f"site-{g}": secrets.token_hex(32) for g in range(20)}
    seqs = dict.fromkeys(logs, 0)
    for n in range(count):
        gateway = f"site-{rng.randrange(20)}"
        seq = seqs[gateway]
        seqs[gateway] += 1
        event = rng.choice(EVENTS)
        identity = f"labgate:user:person{rng.randrange(300)}"
        if n < 200 and n % 2 == 0:
            identity = RARE  # seen only at the start: a scan from the newest end reads it all
        instrument = f"qs5-bench{rng.randrange(60)}"
        command = rng.choice(COMMANDS) if event in ("command", "reply") else None
        decision = rng.choice(DECISIONS) if event == "command" else None
        if event == "refused":
            decision = "refused"
        source = f"10.{rng.randrange(4)}.{rng.randrange(10)}.{rng.randrange(10)}"
        conn = rng.randrange(100_000)
        at = START + timedelta(seconds=3 * n)
        record = {
            "conn": conn, "event": event, "identity": identity, "instrument": instrument,
            "seq": seq, "time": at.isoformat().replace("+00:00", "Z"),
        }  # fmt: skip
        if command:
            record["command"] = command
        if decision and event == "command":
            record["decision"] = decision
        yield {
            "id": n + 1,
            "gateway": gateway,
            "log_id": logs[gateway],
            "seq": seq,
            "hash": secrets.token_hex(32),
            "at": at,
            "event": event,
            "identity": identity,
            "instrument": instrument,
            "command": command,
            "decision": decision,
            "source": source,
            "session": f"{gateway}:{logs[gateway][:16]}:0:{conn}",
            "line": json.dumps(record, sort_keys=True, separators=(",", ":")),
        }


def secondary_indexes() -> list[sa.Index]:
    return [i for i in GatewayAuditRecord.__table__.indexes if i.name is not None]  # type: ignore[attr-defined]


def load(engine: sa.Engine, count: int) -> float:
    """Bulk-load `count` records; seconds taken (index builds and statistics included)."""
    started = time.perf_counter()
    indexes = secondary_indexes()
    with engine.begin() as connection:
        for index in indexes:
            index.drop(connection)
    if engine.dialect.name == "postgresql":
        _copy(engine, count)
    else:
        _insert(engine, count)
    with engine.begin() as connection:
        for index in indexes:
            index.create(connection)
        connection.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


def _insert(engine: sa.Engine, count: int) -> None:
    """SQLite: one transaction, the driver's executemany over plain tuples."""
    columns = ", ".join(COLUMNS)
    marks = ", ".join("?" for _ in COLUMNS)
    statement = f"INSERT INTO gateway_audit_records ({columns}) VALUES ({marks})"
    rows = synthetic(count)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        while True:
            chunk = [
                tuple(_sqlite_value(row[c]) for c in COLUMNS)
                for _, row in zip(range(20_000), rows, strict=False)
            ]
            if not chunk:
                break
            cursor.executemany(statement, chunk)
        raw.commit()
    finally:
        raw.close()


def _sqlite_value(value: object) -> object:
    # As UtcDateTime stores it on SQLite: naive UTC text.
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ")
    return value


def _copy(engine: sa.Engine, count: int) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        columns = ", ".join(COLUMNS)
        with cursor.copy(f"COPY gateway_audit_records ({columns}) FROM STDIN") as copy:
            for row in synthetic(count):
                copy.write_row([row[c] for c in COLUMNS])
        raw.commit()
    finally:
        raw.close()


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Median and worst of REPEAT runs, in milliseconds (after one warm-up run)."""
    action()
    samples = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def searches(count: int) -> dict[str, trail.TrailFilter]:
    middle = START + timedelta(seconds=3 * count // 2)
    return {
        "identity": trail.TrailFilter(identity="labgate:user:person42"),
        "identity (rare, oldest)": trail.TrailFilter(identity=RARE),
        "instrument": trail.TrailFilter(instrument="qs5-bench17"),
        "command": trail.TrailFilter(command="RUNTITLE?"),
        "decision": trail.TrailFilter(decision="denied"),
        "source": trail.TrailFilter(source="10.2.3.4"),
        "gateway": trail.TrailFilter(gateway="site-3"),
        "event": trail.TrailFilter(event="refused"),
        "time range (1 h)": trail.TrailFilter(since=middle, until=middle + timedelta(hours=1)),
    }


def scan_peer(name: str, chosen: trail.TrailFilter) -> sa.Select[Any] | None:
    """The same filter found in the stored lines, without the filter columns' indexes."""
    row = GatewayAuditRecord
    value = next((v for k, v in chosen.given().items() if k in AUDIT_FILTERS), None)
    if name in ("gateway", "source") or value is None:
        return None  # not in the line as the gateway wrote it
    needle = f'"{name}":"{value}"'
    return select_page(row.line.like(f"%{needle}%"))


def select_page(where: Any) -> sa.Select[Any]:
    row = GatewayAuditRecord
    return sa.select(row).where(where).order_by(row.at.desc(), row.id.desc()).limit(51)


def run(url: str, label: str, count: int) -> None:
    engine = make_engine(url, pool_size=2)
    try:
        migrate(engine)
        seconds = load(engine, count)
        print(f"\n{label}: {count:,} records loaded in {seconds:.1f} s ({count / seconds:,.0f}/s)")
        sessions = sessionmaker(engine)
        print(
            f"  {'one filter, one page of 50':<28} {'median':>9} {'worst':>9}   {'peer: scan':>11}"
        )
        for name, chosen in searches(count).items():

            def search(chosen: trail.TrailFilter = chosen) -> None:
                with sessions() as session:
                    page = trail.search(
                        session, chosen, reader="labgate:user:bench", reader_role="admin",
                        now=datetime.now(UTC),
                    )  # fmt: skip
                    assert page.records
                    session.rollback()

            median, worst = timed(search)
            peer = scan_peer(name.split()[0], chosen)
            peer_text = ""
            if peer is not None:

                def scan(statement: sa.Select[Any] = peer) -> None:
                    with Session(engine) as session:
                        assert list(session.scalars(statement))

                peer_median, _ = timed(scan)
                peer_text = f"{peer_median:>9.1f} ms"
            print(f"  {name:<28} {median:>6.1f} ms {worst:>6.1f} ms   {peer_text:>11}")
        _deep_page(sessions)
        _export(sessions)
    finally:
        engine.dispose()


def _deep_page(sessions: sessionmaker[Session]) -> None:
    chosen = trail.TrailFilter(event="command")
    started = time.perf_counter()
    cursor = None
    pages = 0
    with sessions() as session:
        for _ in range(20):
            page = trail.search(
                session, chosen, reader="labgate:user:bench", reader_role="admin",
                now=datetime.now(UTC), after=cursor,
            )  # fmt: skip
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        session.rollback()
    per_page = (time.perf_counter() - started) * 1000 / pages
    print(f"  {f'{pages} pages by cursor':<28} {per_page:>6.1f} ms per page (event=command)")


def _export(sessions: sessionmaker[Session]) -> None:
    chosen = trail.TrailFilter(identity="labgate:user:person42")
    started = time.perf_counter()
    size = rows = 0
    for chunk in trail.export(
        sessions, chosen, fmt="csv", reader="labgate:user:bench", reader_role="admin",
        now=datetime.now(UTC),
    ):  # fmt: skip
        size += len(chunk)
        rows += chunk.count(b"\r\n")
    seconds = time.perf_counter() - started
    print(
        f"  export of one identity: {rows - 1:,} rows, {size / 1e6:.1f} MB CSV in {seconds:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("LABGATE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not 1000 <= args.records <= 10_000_000:
        parser.error("--records must be 1,000 to 10,000,000")
    print(f"site audit trail search, {args.records:,} records, {os.cpu_count()} CPUs")
    for database in args.databases.split(","):
        if database == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                run(f"sqlite:///{Path(tmp) / 'trail.db'}", "SQLite", args.records)
        elif database == "postgresql":
            if not args.postgres_url:
                print("\nPostgreSQL: skipped (set LABGATE_TEST_POSTGRES_URL or --postgres-url)")
                continue
            _postgres(normalise_database_url(args.postgres_url), args.records)
        else:
            parser.error(f"unknown database {database!r}")


def _postgres(base: str, count: int) -> None:
    schema = "bench_" + secrets.token_hex(4)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        run(url.render_as_string(hide_password=False), "PostgreSQL", count)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, line_buffering=True)
    main()
