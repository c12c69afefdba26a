"""Atomic writes: the old file or the new one, never a mix; keys private from their first byte."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

import pytest

from labgate.pki.atomic import PRIVATE, write_atomic


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "x.crt"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.crt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "x.key"
    write_atomic(target, b"old key", mode=PRIVATE)
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes", mode=PRIVATE)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old key"
    assert [p.name for p in tmp_path.iterdir()] == ["x.key"]


def test_a_private_file_is_never_readable_by_others_even_while_being_written(
    tmp_path: Path,
) -> None:
    """Watch the directory while a large key-sized file is written: no moment of 0644."""
    previous = os.umask(0)
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for path in tmp_path.iterdir():
                # A temporary may be renamed between listing and stat.
                with contextlib.suppress(FileNotFoundError):
                    seen.add(stat.S_IMODE(path.stat().st_mode))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(50):
            write_atomic(tmp_path / f"k{i}.key", b"k" * 200_000, mode=PRIVATE)
    finally:
        stop.set()
        watcher.join(10)
        os.umask(previous)
    assert seen == {0o600}


def test_a_missing_directory_is_an_os_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "nowhere" / "x.crt", b"data")


def test_a_write_that_cannot_start_names_the_file_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "alice.key"
    with pytest.raises(FileNotFoundError) as raised:
        write_atomic(target, b"key", mode=PRIVATE)
    assert raised.value.filename == str(target)
