"""The audit log's hash chain: how records are encoded and linked, and how a log is verified.

Pure: no files, no clock, no event loop. `labgate.gateway.audit` does the writing; this module
only turns events into lines and lines into a verdict.

Theory of operation
-------------------
A log is a file of lines. Each line is one JSON object in canonical form (keys sorted, compact
separators, UTF-8, no NaN) followed by b"\\n". Every record carries three chain fields:

- `seq`: 0 for the first record, then one more for each line;
- `prev`: hex SHA-256 of the previous line's exact bytes (without its b"\\n");
- `digest`: hex SHA-256 of the record's own canonical encoding without the `digest` key.

The first record is `{"event": "log-start", "log_id": <64 random hex digits>, "version": 1, ...}`
whose `prev` is the SHA-256 of `GENESIS_PREFIX + log_id`. Because the random id is inside the
first line, the whole chain hangs from it: a log cannot be passed off as another one, and two logs
cannot be spliced together without a visible break.

What the links catch: `prev` ties each line to the bytes of the one before, so removing, swapping
or rewriting any line breaks the next line's link; `seq` tells a removal from a reordering; `digest`
catches a change in the last line (which no later line vouches for) and lets the verdict name the
edited line itself rather than its successor. Canonical form is checked byte for byte, so even a
change that leaves the JSON meaning intact (an added space, an escaped character) is an edit.

What they cannot catch alone: someone who can write the file may cut whole records off the end, or
recompute the chain from some point on. The summary of `verify` gives the head hash (the hash of
the last line) so that it can be kept elsewhere; a later head that does not descend from it proves
the rewrite.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

GENESIS_PREFIX = b"labgate-audit-v1\x00"
FORMAT_VERSION = 1
START_EVENT = "log-start"
STOP_EVENT = "log-stop"
RESUME_EVENT = "log-resume"
RECOVERED_EVENT = "log-recovered"  # writing had failed, and works again
CHAIN_KEYS = frozenset({"seq", "prev", "digest", "time"})

_HEX64 = re.compile(r"[0-9a-f]{64}")


class AuditError(Exception):
    """Base of every error the audit log raises on purpose."""


class AuditRecordError(AuditError, ValueError):
    """An event cannot be recorded: a reserved key, or a value JSON cannot carry."""


class Problem(enum.StrEnum):
    """What is wrong with the first bad line of a log."""

    EDITED = "edited"
    REMOVED = "removed"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    BAD_JSON = "bad JSON"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainHead:
    """Where a chain stands: the next record links to `hash` and takes `seq + 1`."""

    log_id: str
    seq: int
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Intact:
    """Every line links to the one before; `head` is the SHA-256 of the last line."""

    records: int
    last_seq: int
    log_id: str
    head: str
    last_time: str | None
    closed: bool
    ok: Literal[True] = True

    def summary(self) -> str:
        state = "closed cleanly" if self.closed else "not closed (still open, or stopped abruptly)"
        return (
            f"intact: {self.records} records (seq 0-{self.last_seq}), log {self.log_id[:16]}, "
            f"last at {self.last_time}, {state}, head sha256:{self.head}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Broken:
    """The first line (1-based) that is not what the chain says it should be, and why."""

    line: int
    problem: Problem
    reason: str
    ok: Literal[False] = False

    def summary(self) -> str:
        return f"line {self.line} {self.problem}: {self.reason}"


VerifyResult = Intact | Broken


# Built once: `json.dumps` with these options builds the same encoder on every call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def encode(record: Mapping[str, object]) -> bytes:
    """The canonical bytes of a record (without the line's b"\\n")."""
    try:
        text = _CANONICAL.encode(record)
    except (TypeError, ValueError) as err:
        raise AuditRecordError(f"audit event cannot be written as JSON: {err}") from err
    return text.encode("utf-8")


def line_hash(line: bytes) -> str:
    """SHA-256 of a line's bytes, b"\\n" excluded, as the next record's `prev`."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def genesis_hash(log_id: str) -> str:
    """The `prev` of a log's first record: derived from its random id."""
    return hashlib.sha256(GENESIS_PREFIX + log_id.encode("ascii")).hexdigest()


# How a record is sealed with one encoding instead of two
# -------------------------------------------------------
# Canonical form sorts the keys, so a record's encoding with `digest` is its encoding without it
# plus the one entry `"digest":"<hex>",` at its sorted place; never the last entry, as `prev`,
# `seq` and `time` sort after it. So the record is encoded once with a stand-in digest of the
# same length: cutting that entry out gives the bytes the digest covers, writing the digest over
# the stand-in gives the line. The entry is found by the bytes of its key. Those occur at least
# once, in the entry itself; if they occur again (a nested object with its own "digest"), the
# record is encoded twice the plain way rather than guess which occurrence is the entry.
_DIGEST_STANDIN = "0" * 64
_DIGEST_KEY = b'"digest":"'


def _seal(fields: dict[str, object]) -> tuple[bytes, str]:
    """The line of `fields` with its digest filled in, and the line's hash.

    `fields` holds every chain key, `digest` set to `_DIGEST_STANDIN`.
    """
    body = encode(fields)
    value = body.find(_DIGEST_KEY) + len(_DIGEST_KEY)
    if body.find(_DIGEST_KEY, value) == -1:
        end = value + len(_DIGEST_STANDIN)  # the closing quote; then the next entry's comma
        digest = hashlib.sha256(body[: value - len(_DIGEST_KEY)] + body[end + 2 :]).hexdigest()
        sealed = body[:value] + digest.encode("ascii") + body[end:]
    else:
        unsealed = {key: item for key, item in fields.items() if key != "digest"}
        digest = hashlib.sha256(encode(unsealed)).hexdigest()
        sealed = encode({**unsealed, "digest": digest})
    return sealed + b"\n", hashlib.sha256(sealed).hexdigest()


def start_line(*, log_id: str, time: str) -> tuple[bytes, ChainHead]:
    """The first line of a new log, and the head that follows it."""
    if not _HEX64.fullmatch(log_id):
        raise AuditRecordError(f"log id {log_id!r} is not 64 lowercase hex digits")
    fields: dict[str, object] = {
        "event": START_EVENT,
        "log_id": log_id,
        "version": FORMAT_VERSION,
        "time": time,
        "seq": 0,
        "prev": genesis_hash(log_id),
        "digest": _DIGEST_STANDIN,
    }
    line, line_sha = _seal(fields)
    return line, ChainHead(log_id=log_id, seq=0, hash=line_sha)


def next_line(
    head: ChainHead, event: Mapping[str, object], *, time: str
) -> tuple[bytes, ChainHead]:
    """The line recording `event` after `head`, and the new head.

    The chain keys (`seq`, `prev`, `digest`, `time`) belong to the log: an event carrying one is
    refused rather than silently overwritten, so a caller's bug cannot forge a link.
    """
    seq = head.seq + 1
    fields = {**event, "digest": _DIGEST_STANDIN, "prev": head.hash, "seq": seq, "time": time}
    # Fewer keys than the event's and the chain's together: one of the event's was a chain key.
    # (Counting is cheaper than intersecting for every record; the intersection names the key.)
    if len(fields) != len(event) + len(CHAIN_KEYS):
        clash = CHAIN_KEYS.intersection(event)
        if clash:
            raise AuditRecordError(
                f"audit event uses reserved key(s) {sorted(clash)}; the log sets those itself"
            )
    line, line_sha = _seal(fields)
    return line, ChainHead(log_id=head.log_id, seq=seq, hash=line_sha)


# ---------------------------------------------------------------- verifying


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedLine:
    """A line that holds together on its own: its record, chain fields and SHA-256."""

    record: dict[str, object]
    seq: int
    prev: str
    hash: str
    body: bytes  # the line's bytes without b"\n"


def _parse(raw: bytes, *, last: bool) -> ParsedLine | tuple[Problem, str]:
    """One line checked on its own: complete, JSON, canonical, chain fields, own digest."""
    if not raw.endswith(b"\n"):
        what = "last line" if last else "line"
        return Problem.TRUNCATED, f"{what} does not end with a newline: it was cut short"
    body = raw[:-1]
    try:
        record = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return Problem.BAD_JSON, f"not a JSON record ({err})"
    if not isinstance(record, dict):
        return Problem.BAD_JSON, f"a JSON {type(record).__name__}, expected an object"
    try:
        canonical = encode(record)
    except AuditRecordError:
        return Problem.BAD_JSON, "holds a value outside canonical JSON (NaN or Infinity)"
    if canonical != body:
        return Problem.EDITED, "bytes differ from the canonical form the log writes"
    seq, prev, digest = record.get("seq"), record.get("prev"), record.get("digest")
    if type(seq) is not int or seq < 0:
        return Problem.EDITED, f"'seq' is {seq!r}, expected a count from 0"
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        return Problem.EDITED, f"'prev' is {prev!r}, expected a SHA-256 in hex"
    unsealed = {k: v for k, v in record.items() if k != "digest"}
    if digest != hashlib.sha256(encode(unsealed)).hexdigest():
        return Problem.EDITED, "its content does not match its own digest"
    return ParsedLine(
        record=record, seq=seq, prev=prev, hash=hashlib.sha256(body).hexdigest(), body=body
    )


def read_line(raw: bytes) -> ParsedLine | Broken:
    """One line (with its b"\\n") checked on its own, as `verify` checks each: complete, JSON,
    canonical, chain fields well formed, its own digest right. For a reader that holds the chain
    elsewhere (the control server), which then checks `seq` and `prev` against what it holds."""
    parsed = _parse(raw, last=True)
    if isinstance(parsed, ParsedLine):
        return parsed
    return Broken(line=1, problem=parsed[0], reason=parsed[1])


def _peek_seq(raw: bytes) -> int | None:
    try:
        seq = json.loads(raw).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if type(seq) is int else None


def _classify_gap(
    lineno: int, expected: int, found: int, rest: Iterator[tuple[int, bytes]]
) -> Broken:
    """Records `expected..found-1` are missing here: later in the file (reordered) or gone."""
    for later, raw in rest:
        seq = _peek_seq(raw)
        if seq is not None and expected <= seq < found:
            return Broken(
                line=lineno,
                problem=Problem.REORDERED,
                reason=f"expected record seq {expected}, found seq {found}; "
                f"seq {seq} comes later, at line {later}",
            )
    count = found - expected
    span = f"seq {expected}" if count == 1 else f"seq {expected}-{found - 1}"
    return Broken(
        line=lineno,
        problem=Problem.REMOVED,
        reason=f"{count} record(s) ({span}) missing before this line",
    )


def _check_start(parsed: ParsedLine) -> Broken | None:
    record = parsed.record
    if parsed.seq != 0:
        return Broken(
            line=1,
            problem=Problem.REMOVED,
            reason=f"the log begins at seq {parsed.seq}: its first records were removed",
        )
    log_id = record.get("log_id")
    if record.get("event") != START_EVENT or not isinstance(log_id, str):
        return Broken(line=1, problem=Problem.EDITED, reason="the first record is not a log-start")
    if not _HEX64.fullmatch(log_id) or parsed.prev != genesis_hash(log_id):
        return Broken(
            line=1, problem=Problem.EDITED, reason="'prev' does not derive from the log's own id"
        )
    return None


def _link(
    lineno: int, prev: ParsedLine, cur: ParsedLine, rest: Iterator[tuple[int, bytes]]
) -> Broken | None:
    expected = prev.seq + 1
    if cur.seq > expected:
        return _classify_gap(lineno, expected, cur.seq, rest)
    if cur.seq < expected:
        if cur.record.get("event") == START_EVENT:
            reason = "another log (a second log-start) begins here: two logs were joined"
        else:
            reason = f"record seq {cur.seq} comes after seq {prev.seq}: out of order or repeated"
        return Broken(line=lineno, problem=Problem.REORDERED, reason=reason)
    if cur.prev != prev.hash:
        # Sequence numbers agree, so nothing is missing: the line before was rewritten (with a
        # recomputed digest, or its own check would have failed first).
        return Broken(
            line=lineno - 1,
            problem=Problem.EDITED,
            reason=f"line {lineno} records a different hash for it",
        )
    return None


def _walk(lines: Iterable[bytes], *, from_start: bool) -> VerifyResult | None:
    numbered = _lookahead(enumerate(lines, start=1))
    first: ParsedLine | None = None
    prev: ParsedLine | None = None
    for (lineno, raw), last in numbered:
        parsed = _parse(raw, last=last)
        if not isinstance(parsed, ParsedLine):
            return Broken(line=lineno, problem=parsed[0], reason=parsed[1])
        if prev is None:
            first = parsed
            problem = _check_start(parsed) if from_start else None
        else:
            problem = _link(lineno, prev, parsed, (item for item, _ in numbered))
        if problem is not None:
            return problem
        prev = parsed
    if prev is None or first is None:
        return None
    log_id = first.record.get("log_id")
    last_time = prev.record.get("time")
    return Intact(
        records=prev.seq - first.seq + 1,
        last_seq=prev.seq,
        log_id=log_id if isinstance(log_id, str) else "",
        head=prev.hash,
        last_time=last_time if isinstance(last_time, str) else None,
        closed=prev.record.get("event") == STOP_EVENT,
    )


def _lookahead(items: Iterator[tuple[int, bytes]]) -> Iterator[tuple[tuple[int, bytes], bool]]:
    """Each item with a flag telling whether it is the last one (to name a truncated last line)."""
    try:
        pending = next(items)
    except StopIteration:
        return
    for item in items:
        yield pending, False
        pending = item
    yield pending, True


def verify(lines: Iterable[bytes]) -> VerifyResult:
    """Check a whole log, given its lines as read in binary mode (each with its b"\\n").

    Streams: memory does not grow with the log. Returns `Intact` or the first `Broken` line.
    """
    result = _walk(lines, from_start=True)
    if result is None:
        return Broken(
            line=1, problem=Problem.REMOVED, reason="the log is empty: no log-start record"
        )
    return result


def verify_tail(lines: Iterable[bytes]) -> VerifyResult | None:
    """Check the links among the last lines of a log (for resuming without reading all of it).

    `lines` are complete lines from somewhere in the log; the first one is not checked against
    a predecessor. Line numbers in a `Broken` count from the first line given. None if empty.
    """
    return _walk(lines, from_start=False)
