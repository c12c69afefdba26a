"""The file store refuses every path that would leave it, from the API and from the wire."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labgate.instrument.errors import FileMissing, FileStoreError, PathEscape
from labgate.instrument.filestore import FileStore
from labgate.instrument.simulator import RunningSimulator
from labgate.scpi.messages import Error, Ok

ESCAPES = [
    "public_run_complete:../../secret.txt",
    "../secret.txt",
    "/etc/passwd",
    "public_run_complete:/etc/passwd",
    "public_run_complete:sub/../../../secret.txt",
    "../x:file",
    "a/b:file",
    "public_run_complete:x\x00y",
    "public_run_complete:..\\..\\secret.txt",
]


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    (tmp_path / "secret.txt").write_text("outside")
    return FileStore(tmp_path / "files")


@pytest.mark.parametrize("name", ESCAPES)
def test_paths_leaving_the_store_are_refused(store: FileStore, name: str) -> None:
    with pytest.raises(PathEscape):
        store.read(name)
    with pytest.raises(PathEscape):
        store.write(name, b"x")


def test_a_symlink_planted_inside_cannot_lead_outside(store: FileStore, tmp_path: Path) -> None:
    (store.root / "public_run_complete" / "link").symlink_to(tmp_path)
    with pytest.raises(PathEscape, match="outside"):
        store.read("public_run_complete:link/secret.txt")
    with pytest.raises(PathEscape):
        store.move("public_run_complete:link/secret.txt", "public_run_complete:stolen")
    assert (tmp_path / "secret.txt").read_text() == "outside"


def test_write_read_move_remove(store: FileStore) -> None:
    store.write("experiments:run/a.txt", b"hello")
    assert store.read("experiments:run/a.txt") == b"hello"
    assert [entry.name for entry in store.list("experiments:run/*.txt")] == [
        "experiments:run/a.txt"
    ]
    store.move("experiments:run/a.txt", "public_run_complete:a.txt")
    assert store.read("public_run_complete:a.txt") == b"hello"
    store.remove("public_run_complete:a.txt")
    with pytest.raises(FileMissing):
        store.read("public_run_complete:a.txt")


def test_a_context_itself_cannot_be_removed_or_written(store: FileStore) -> None:
    with pytest.raises(FileStoreError, match="context") as caught:
        store.remove("public_run_complete:")
    assert not isinstance(caught.value, FileMissing)
    with pytest.raises(FileStoreError, match="inside a context"):
        store.write("loose.txt", b"x")
    assert (store.root / "public_run_complete").is_dir()


def _controller(client: Any, password: str) -> None:
    challenge = client.ask("0 CHAL?").text
    answer = hmac.new(password.encode(), challenge.encode(), hashlib.md5).hexdigest()
    client.ask(f"1 AUTH {answer}")
    assert client.ask("2 ACC Controller") == Ok(ident=2)


def test_reading_the_servers_key_through_the_wire_is_refused(
    threaded: RunningSimulator, raw: Callable[..., Any], controller_password: str
) -> None:
    client = raw(threaded.plain)
    _controller(client, controller_password)
    key_pem = (threaded.config.state_dir / "sim-key.pem").read_text()
    for ident, name in enumerate(["public_run_complete:../../sim-key.pem", "../sim-key.pem"], 3):
        reply = client.ask(f"{ident} FILE:READ? -encoding=base64 {name}")
        assert isinstance(reply, Error) and reply.error_class == "IOError"
        assert "BEGIN" not in reply.message and key_pem[40:80] not in reply.message


def test_writing_outside_through_the_wire_is_refused(
    threaded: RunningSimulator, raw: Callable[..., Any], controller_password: str
) -> None:
    client = raw(threaded.plain)
    _controller(client, controller_password)
    body = base64.encodebytes(b"owned").decode()
    reply = client.ask(
        f"3 FILE:WRITE public_run_complete:../../owned.txt <quote.base64>\n{body}</quote.base64>"
    )
    assert isinstance(reply, Error) and reply.error_class == "IOError"
    assert not (threaded.config.state_dir / "owned.txt").exists()
    moved = client.ask("4 FILE:MOVE public_run_complete:x ../../commands.jsonl")
    assert isinstance(moved, Error)
    assert threaded.command_log.exists()


def test_a_folder_named_without_a_glob_lists_what_it_holds(store: FileStore) -> None:
    store.write("experiments:run/apldbio/sds/a.xml", b"a")
    store.write("experiments:run/apldbio/sds/filter/b.xml", b"b")
    # qslib's recursive listing asks with each folder's listed name, no trailing slash; an
    # answer naming the folder again sent it into endless recursion.
    for name in ("experiments:run/apldbio/sds", "experiments:run/apldbio/sds/"):
        listed = [(entry.name, entry.kind) for entry in store.list(name)]
        assert listed == [
            ("experiments:run/apldbio/sds/a.xml", "file"),
            ("experiments:run/apldbio/sds/filter", "folder"),
        ]
    assert [entry.name for entry in store.list("experiments:run")] == ["experiments:run/apldbio"]
    # A glob still matches names in the folder above, and a file names itself.
    assert [entry.name for entry in store.list("experiments:ru*")] == ["experiments:run"]
    only = store.list("experiments:run/apldbio/sds/a.xml")
    assert [entry.name for entry in only] == ["experiments:run/apldbio/sds/a.xml"]


def test_a_folder_listing_cannot_step_outside(store: FileStore) -> None:
    with pytest.raises(PathEscape):
        store.list("experiments:run/..")
