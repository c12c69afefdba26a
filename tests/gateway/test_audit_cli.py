"""`labgate audit verify` on real logs written by AuditLog, intact and tampered with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.gateway.audit import AuditLog


@pytest.fixture
def log_lines(tmp_path: Path) -> list[bytes]:
    path = tmp_path / "written.jsonl"
    with AuditLog(path) as log:
        for i in range(8):
            log.record(
                {"event": "command", "conn": i, "identity": "labgate:user:alice", "cmd": "DRAW?"}
            )
    return path.read_bytes().splitlines(keepends=True)


def run_verify(tmp_path: Path, lines: list[bytes]) -> tuple[int, str]:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(lines))
    result = CliRunner().invoke(app, ["audit", "verify", str(path)])
    return result.exit_code, result.output


def test_intact_log_passes_with_a_one_line_summary(tmp_path: Path, log_lines: list[bytes]) -> None:
    code, output = run_verify(tmp_path, log_lines)
    assert code == 0
    assert output.count("\n") == 1
    assert "intact: 10 records" in output and "closed cleanly" in output


def test_edited_line_fails_and_is_named(tmp_path: Path, log_lines: list[bytes]) -> None:
    log_lines[4] = log_lines[4].replace(b"alice", b"admin")
    code, output = run_verify(tmp_path, log_lines)
    assert code == 1
    assert "line 5 edited" in output


def test_deleted_line_fails_and_is_named(tmp_path: Path, log_lines: list[bytes]) -> None:
    del log_lines[6]
    code, output = run_verify(tmp_path, log_lines)
    assert code == 1
    assert "line 7 removed" in output


def test_swapped_lines_fail_and_are_named(tmp_path: Path, log_lines: list[bytes]) -> None:
    log_lines[2], log_lines[3] = log_lines[3], log_lines[2]
    code, output = run_verify(tmp_path, log_lines)
    assert code == 1
    assert "line 3 reordered" in output


def test_truncated_last_line_fails_and_is_named(tmp_path: Path, log_lines: list[bytes]) -> None:
    log_lines[-1] = log_lines[-1][:-20]
    code, output = run_verify(tmp_path, log_lines)
    assert code == 1
    assert "line 10 truncated" in output
    assert "the 9 records before it are intact (seq 0-8" in output


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "verify", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_real_command_passes_an_intact_log_and_fails_a_truncated_one(
    tmp_path: Path, log_lines: list[bytes]
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(log_lines))
    command = [sys.executable, "-m", "labgate", "audit", "verify", str(path)]
    good = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert "intact" in good.stdout
    path.write_bytes(b"".join(log_lines)[:-15])
    bad = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "line 10 truncated" in bad.stderr


def test_a_kept_head_catches_a_log_cut_short_or_rewritten(
    tmp_path: Path, log_lines: list[bytes]
) -> None:
    """The chain that is left verifies either way; the head kept elsewhere does not."""
    from labgate.gateway.auditchain import line_hash, next_line, start_line, verify

    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(log_lines))
    kept = f"{len(log_lines) - 1}:sha256:{verify(log_lines).head}"  # as verify prints it

    def check(head: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["audit", "verify", str(path), "--head", head])
        return result.exit_code, result.output

    assert check(kept)[0] == 0
    path.write_bytes(b"".join(log_lines[:6]))
    code, output = check(kept)
    assert code == 1 and "cut short" in output
    records = [json.loads(line) for line in log_lines]
    line, chain = start_line(log_id=records[0]["log_id"], time=records[0]["time"])
    forged = [line]
    for record in records[1:]:
        event = {k: v for k, v in record.items() if k not in ("seq", "prev", "digest", "time")}
        event["cmd"] = "OPEN" if record["seq"] == 3 else event.get("cmd")
        line, chain = next_line(chain, {k: v for k, v in event.items() if v is not None},
                                time=record["time"])  # fmt: skip
        forged.append(line)
    path.write_bytes(b"".join(forged))
    assert verify(forged).ok
    code, output = check(kept)
    assert code == 1 and "rewritten" in output
    assert line_hash(forged[-1]) != verify(log_lines).head
    assert check("7:nothex")[0] == 2  # a malformed head is a usage error
