"""The audit hash chain on its own: lines built in memory, then tampered with."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labgate.gateway.auditchain import (
    AuditRecordError,
    Broken,
    ChainHead,
    Intact,
    Problem,
    encode,
    genesis_hash,
    line_hash,
    next_line,
    start_line,
    verify,
)

LOG_ID = "ab" * 32
OTHER_ID = "cd" * 32


def build(count: int, *, log_id: str = LOG_ID) -> list[bytes]:
    line, head = start_line(log_id=log_id, time="2026-11-23T05:00:00.000Z")
    lines = [line]
    for i in range(count):
        event = {"event": "command", "conn": i, "identity": "labgate:user:alice", "cmd": "POW?"}
        line, head = next_line(head, event, time=f"2026-11-23T05:00:{i % 60:02d}.000Z")
        lines.append(line)
    return lines


def reseal(line: bytes, **changes: object) -> bytes:
    """The line with fields changed and its own digest recomputed, as a careful forger would."""
    record = json.loads(line)
    record.update(changes)
    del record["digest"]
    record["digest"] = hashlib.sha256(encode(record)).hexdigest()
    return encode(record) + b"\n"


def broken(lines: list[bytes]) -> Broken:
    result = verify(lines)
    assert isinstance(result, Broken), result
    return result


def test_fresh_log_is_intact_and_names_its_head() -> None:
    lines = build(5)
    result = verify(lines)
    assert isinstance(result, Intact)
    assert result.records == 6
    assert result.log_id == LOG_ID
    assert result.head == line_hash(lines[-1])
    assert "intact: 6 records" in result.summary()


def test_first_line_links_to_the_genesis_of_its_own_log_id() -> None:
    record = json.loads(build(0)[0])
    assert record["event"] == "log-start"
    assert record["prev"] == genesis_hash(LOG_ID)
    assert genesis_hash(LOG_ID) != genesis_hash(OTHER_ID)


def test_edited_line_is_named() -> None:
    lines = build(6)
    lines[3] = lines[3].replace(b"alice", b"mallo")
    result = broken(lines)
    assert (result.line, result.problem) == (4, Problem.EDITED)
    assert "digest" in result.reason


def test_edit_with_recomputed_digest_is_named_by_the_next_line() -> None:
    lines = build(6)
    lines[3] = reseal(lines[3], identity="labgate:user:mallory")
    result = broken(lines)
    assert (result.line, result.problem) == (4, Problem.EDITED)
    assert "line 5 records a different hash" in result.reason


def test_edited_last_line_is_caught_by_its_own_digest() -> None:
    lines = build(3)
    lines[-1] = lines[-1].replace(b"POW?", b"OPEN")
    assert (broken(lines).line, broken(lines).problem) == (4, Problem.EDITED)


def test_deleted_line_is_named_where_it_was() -> None:
    lines = build(6)
    del lines[2]
    result = broken(lines)
    assert (result.line, result.problem) == (3, Problem.REMOVED)
    assert "seq 2" in result.reason


def test_several_deleted_lines_are_counted() -> None:
    lines = build(8)
    del lines[2:5]
    result = broken(lines)
    assert (result.line, result.problem) == (3, Problem.REMOVED)
    assert "3 record(s) (seq 2-4)" in result.reason


def test_swapped_lines_are_reordered_not_removed() -> None:
    lines = build(6)
    lines[2], lines[3] = lines[3], lines[2]
    result = broken(lines)
    assert (result.line, result.problem) == (3, Problem.REORDERED)
    assert "at line 4" in result.reason


def test_repeated_line_is_reordered() -> None:
    lines = build(4)
    lines.insert(4, lines[2])
    assert (broken(lines).line, broken(lines).problem) == (5, Problem.REORDERED)


def test_truncated_last_line_is_named() -> None:
    lines = build(4)
    lines[-1] = lines[-1][:40]
    result = broken(lines)
    assert (result.line, result.problem) == (5, Problem.TRUNCATED)


def test_missing_final_newline_is_a_truncation() -> None:
    lines = build(2)
    lines[-1] = lines[-1].rstrip(b"\n")
    assert broken(lines).problem is Problem.TRUNCATED


def test_line_that_is_not_json_is_named() -> None:
    lines = build(3)
    lines.insert(2, b"hello\n")
    assert (broken(lines).line, broken(lines).problem) == (3, Problem.BAD_JSON)


def test_added_whitespace_is_an_edit_even_though_the_json_means_the_same() -> None:
    lines = build(3)
    lines[2] = lines[2].replace(b'"conn":', b'"conn": ')
    assert json.loads(lines[2])["conn"] == 1
    assert (broken(lines).line, broken(lines).problem) == (3, Problem.EDITED)


def test_removed_beginning_is_named() -> None:
    lines = build(5)[2:]
    result = broken(lines)
    assert (result.line, result.problem) == (1, Problem.REMOVED)


def test_first_line_of_another_log_does_not_fit() -> None:
    lines = build(3)
    lines[0] = build(0, log_id=OTHER_ID)[0]
    result = broken(lines)
    assert (result.line, result.problem) == (1, Problem.EDITED)


def test_forged_log_start_not_derived_from_its_id_is_refused() -> None:
    lines = build(2)
    lines[0] = reseal(lines[0], prev="0" * 64)
    assert (broken(lines).line, broken(lines).problem) == (1, Problem.EDITED)


def test_two_logs_joined_are_caught_where_the_second_begins() -> None:
    lines = build(3) + build(2, log_id=OTHER_ID)
    result = broken(lines)
    assert (result.line, result.problem) == (5, Problem.REORDERED)
    assert "two logs were joined" in result.reason


def test_empty_log_is_not_intact() -> None:
    assert broken([]).problem is Problem.REMOVED


def test_cut_off_records_change_the_head() -> None:
    # The chain cannot see whole records cut off the end; a head kept elsewhere can.
    full, cut = verify(build(5)), verify(build(5)[:-2])
    assert isinstance(full, Intact) and isinstance(cut, Intact)
    assert full.head != cut.head


def test_event_with_a_chain_key_is_refused() -> None:
    head = ChainHead(log_id=LOG_ID, seq=0, hash="0" * 64)
    with pytest.raises(AuditRecordError, match=r"reserved key\(s\) \['prev', 'seq'\]"):
        next_line(head, {"event": "x", "seq": 9, "prev": "f" * 64}, time="t")


def test_event_json_cannot_carry_is_refused() -> None:
    head = ChainHead(log_id=LOG_ID, seq=0, hash="0" * 64)
    with pytest.raises(AuditRecordError, match="cannot be written as JSON"):
        next_line(head, {"event": "x", "blob": b"bytes"}, time="t")
    with pytest.raises(AuditRecordError, match="cannot be written as JSON"):
        next_line(head, {"event": "x", "ratio": float("nan")}, time="t")


def test_bad_log_id_is_refused() -> None:
    with pytest.raises(AuditRecordError, match="not 64 lowercase hex"):
        start_line(log_id="short", time="t")


LOG = b"".join(build(6))


@settings(max_examples=400, deadline=None)
@given(position=st.integers(0, len(LOG) - 1), byte=st.integers(0, 255))
def test_any_single_byte_change_is_detected(position: int, byte: int) -> None:
    if LOG[position] == byte:
        byte ^= 0x01
    tampered = LOG[:position] + bytes([byte]) + LOG[position + 1 :]
    assert not verify(io.BytesIO(tampered)).ok


@settings(max_examples=100, deadline=None)
@given(events=st.lists(st.dictionaries(st.text(min_size=1), st.text() | st.integers()), max_size=8))
def test_any_events_make_an_intact_log(events: list[dict[str, object]]) -> None:
    line, head = start_line(log_id=LOG_ID, time="t0")
    lines = [line]
    for event in events:
        fields = {k: v for k, v in event.items() if k not in {"seq", "prev", "digest", "time"}}
        line, head = next_line(head, fields, time="t")
        lines.append(line)
    result = verify(io.BytesIO(b"".join(lines)))
    assert isinstance(result, Intact)
    assert result.records == len(events) + 1
