"""The data directory: key files 0600, the state file written last, nothing else left behind."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labgate.agent.errors import CorruptState, NotLinked
from labgate.agent.store import DEVICE, STATE, TOKENS, Linked, Store, Tokens

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def linked() -> Linked:
    return Linked(
        device_id="d1",
        identity="labgate:device:d1",
        serial="ab",
        not_before=NOW,
        not_after=NOW + timedelta(days=1),
        linked_at=NOW,
    )


def tokens() -> Tokens:
    return Tokens(
        access_token="A" * 40,
        refresh_token="R" * 40,
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=24),
    )


def test_a_link_is_stored_with_private_files_0600(data_dir: Path) -> None:
    store = Store(data_dir)
    store.prepare()
    store.save_link(linked(), b"KEY AND CERT", tokens())
    assert stat.S_IMODE((data_dir / DEVICE).stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / TOKENS).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert store.linked() == linked()
    assert store.tokens() == tokens()
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([DEVICE, TOKENS, STATE])


def test_tokens_do_not_show_in_their_repr() -> None:
    assert "AAAA" not in repr(tokens()) and "RRRR" not in repr(tokens())


def test_forgetting_a_link_removes_state_and_secrets(data_dir: Path) -> None:
    store = Store(data_dir)
    store.prepare()
    store.save_link(linked(), b"KEY", tokens())
    store.forget_link()
    assert store.linked() is None
    with pytest.raises(NotLinked):
        store.tokens()


def test_a_corrupt_state_file_is_named(data_dir: Path) -> None:
    store = Store(data_dir)
    store.prepare()
    (data_dir / STATE).write_text("{not json")
    with pytest.raises(CorruptState, match=r"state\.json"):
        store.linked()
    (data_dir / STATE).write_text(json.dumps({"device_id": "d1"}))
    with pytest.raises(CorruptState, match=r"state\.json"):
        store.linked()
