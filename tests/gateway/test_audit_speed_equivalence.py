"""The one-pass sealing and the cached-second clock write the very bytes the old code wrote.

The reference below is the algorithm the log shipped with: encode the record without `digest`,
hash it, encode again with it, hash the line. Logs written by either must be indistinguishable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labgate.gateway.audit import AuditLog, rfc3339_from_ns, rfc3339_now
from labgate.gateway.auditchain import (
    CHAIN_KEYS,
    AuditRecordError,
    ChainHead,
    next_line,
    start_line,
)

# ---------------------------------------------------------------- the old algorithm


def reference_encode(record: object) -> bytes:
    text = json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def reference_seal(fields: dict[str, object]) -> tuple[bytes, str]:
    fields["digest"] = hashlib.sha256(reference_encode(fields)).hexdigest()
    line = reference_encode(fields) + b"\n"
    return line, hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def reference_next_line(
    head: ChainHead, event: dict[str, object], *, time: str
) -> tuple[bytes, str]:
    fields = dict(event)
    fields.update(time=time, seq=head.seq + 1, prev=head.hash)
    return reference_seal(fields)


def reference_start_line(log_id: str, time: str) -> tuple[bytes, str]:
    genesis = hashlib.sha256(b"labgate-audit-v1\x00" + log_id.encode("ascii")).hexdigest()
    fields: dict[str, object] = {
        "event": "log-start",
        "log_id": log_id,
        "version": 1,
        "time": time,
        "seq": 0,
        "prev": genesis,
    }
    return reference_seal(fields)


def reference_rfc3339(ns: int) -> str:
    # What datetime.now(UTC) makes of a clock reading: floored to microseconds.
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- events to try

# Keys that sort just before, at and after "digest", where the one-pass splice cuts the record.
NEAR_DIGEST = ["a", "args", "d", "decision", "dig", "digest", "digest_x", "digesta", "digest "]
NEAR_DIGEST += ["Digest", "e", "event", "prev", "prev_x", "seq", "time", "z", "", "séq", "ключ"]
STANDINS = ["0" * 64, '"digest":"', '","', "\\", '"', "\n", "\u2028", "\x00", "é€𝄞"]

keys = st.sampled_from(NEAR_DIGEST) | st.text(max_size=6)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(STANDINS)
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)
events = st.dictionaries(keys.filter(lambda key: key not in CHAIN_KEYS), values, max_size=10)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
heads = st.builds(ChainHead, log_id=hex64, seq=st.integers(0, 2**63), hash=hex64)
times = st.sampled_from(["2026-11-23T05:01:06.123Z", ""]) | st.text(max_size=30)

# ---------------------------------------------------------------- the chain


@settings(max_examples=500, deadline=None)
@given(head=heads, event=events, time=times)
def test_next_line_writes_what_the_two_pass_encoder_wrote(
    head: ChainHead, event: dict[str, object], time: str
) -> None:
    line, new_head = next_line(head, event, time=time)
    assert (line, new_head.hash) == reference_next_line(head, event, time=time)
    assert (new_head.seq, new_head.log_id) == (head.seq + 1, head.log_id)


@settings(max_examples=200, deadline=None)
@given(log_id=hex64, time=times)
def test_start_line_writes_what_the_two_pass_encoder_wrote(log_id: str, time: str) -> None:
    line, head = start_line(log_id=log_id, time=time)
    assert (line, head.hash) == reference_start_line(log_id, time)


@pytest.mark.parametrize(
    "event",
    [
        {"event": "x", "detail": {"digest": "0" * 64}},
        {"args": [{"digest": "0" * 64}], "event": "x"},
        {"a": {"digest": "abc"}, "z": {"digest": "def"}},
        {"digest_x": '"digest":"' + "0" * 64 + '",'},
        {"d": {"digest": {"digest": "0" * 64}}, "e": 1},
    ],
)
def test_nested_digest_entries_change_nothing(event: dict[str, object]) -> None:
    head = ChainHead(log_id="ab" * 32, seq=41, hash="cd" * 32)
    line, new_head = next_line(head, event, time="2026-11-23T05:01:06.123Z")
    expected = reference_next_line(head, event, time="2026-11-23T05:01:06.123Z")
    assert (line, new_head.hash) == expected


def circular() -> dict[str, object]:
    loop: dict[str, object] = {}
    loop["self"] = loop
    return {"event": "x", "loop": loop}


@pytest.mark.parametrize(
    "event",
    [
        {"event": "x", "ratio": math.nan},
        {"event": "x", "nested": [{"limit": math.inf}]},
        {"event": "x", "body": b"raw"},
        {"event": "x", "tags": {"a", "b"}},
        {"event": "x", 7: "int key among str keys"},
        circular(),
    ],
    ids=["nan", "nested-inf", "bytes", "set", "int-key", "circular"],
)
def test_what_the_old_encoder_refused_is_still_refused(event: dict[object, object]) -> None:
    head = ChainHead(log_id="ab" * 32, seq=0, hash="cd" * 32)
    with pytest.raises((TypeError, ValueError)):
        reference_next_line(head, event, time="t")  # type: ignore[arg-type]
    with pytest.raises(AuditRecordError, match="cannot be written as JSON"):
        next_line(head, event, time="t")  # type: ignore[arg-type]


@pytest.mark.parametrize("key", sorted(CHAIN_KEYS))
def test_each_chain_key_in_an_event_is_refused_by_name(key: str) -> None:
    head = ChainHead(log_id="ab" * 32, seq=0, hash="cd" * 32)
    with pytest.raises(AuditRecordError, match=rf"reserved key\(s\) \['{key}'\]"):
        next_line(head, {"event": "x", key: "forged"}, time="t")


def test_a_written_log_holds_the_lines_the_old_code_would_have_written(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, batch_size=7) as log:
        for conn in range(50):
            log.record(
                {
                    "event": "command",
                    "conn": conn,
                    "identity": "labgate:user:alice",
                    "fingerprint": "ab" * 32,
                    "args": [conn, "ünïcode", {"digest": "0" * 64}] if conn % 5 == 0 else [],
                    "decision": "allowed",
                }
            )
    lines = path.read_bytes().splitlines(keepends=True)
    start = json.loads(lines[0])
    assert lines[0] == reference_start_line(start["log_id"], start["time"])[0]
    for before, line in itertools.pairwise(lines):
        record = json.loads(line)
        head = ChainHead(log_id=start["log_id"], seq=record["seq"] - 1, hash=record["prev"])
        event = {k: v for k, v in record.items() if k not in CHAIN_KEYS}
        assert record["prev"] == hashlib.sha256(before.rstrip(b"\n")).hexdigest()
        assert line == reference_next_line(head, event, time=record["time"])[0]


# ---------------------------------------------------------------- the clock

LAST_SECOND_OF_9999 = 253_402_300_799


@settings(max_examples=2000, deadline=None)
@given(ns=st.integers(0, LAST_SECOND_OF_9999 * 10**9 + 999_999_999))
def test_timestamps_read_as_datetime_wrote_them(ns: int) -> None:
    assert rfc3339_from_ns(ns) == reference_rfc3339(ns)


@pytest.mark.parametrize(
    "ns",
    [
        0,
        999_999,
        1_000_000,
        999_999_999,
        10**9,
        1_795_410_066_123_456_789,
        1_795_410_066_999_999_999,
    ],
)
def test_timestamps_at_millisecond_and_second_edges(ns: int) -> None:
    assert rfc3339_from_ns(ns) == reference_rfc3339(ns)
    assert rfc3339_from_ns(ns + 1) >= rfc3339_from_ns(ns)


def test_timestamps_follow_the_wall_clock() -> None:
    def old_now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    stamps = []
    for _ in range(2000):
        before = old_now()
        stamp = rfc3339_now()
        assert before <= stamp <= old_now()
        stamps.append(stamp)
    assert stamps == sorted(stamps)
