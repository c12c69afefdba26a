"""FILE:LIST?, FILE:READ?, FILE:WRITE, FILE:REMOVE, FILE:MOVE over the instrument's file store."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from labgate.instrument.dispatch import flag, option, table
from labgate.instrument.errors import FileMissing, FileStoreError
from labgate.instrument.expansion import expanded_args
from labgate.instrument.filestore import Entry
from labgate.instrument.outcomes import Outcome, error
from labgate.scpi.messages import Command, Error, Ok

if TYPE_CHECKING:
    from labgate.instrument.session import Session


def refused(ident: int, exc: FileStoreError) -> Error:
    error_class = "NoMatch" if isinstance(exc, FileMissing) else "IOError"
    return error(ident, error_class, str(exc))


def _verbose_line(entry: Entry) -> str:
    return (
        f'"{entry.name}" -type={entry.kind} -size={entry.size} -mtime={entry.mtime:.3f}'
        f" -atime={entry.atime:.3f} -ctime={entry.ctime:.3f}"
    )


async def list_files(session: Session, command: Command) -> Outcome:
    args = list(await expanded_args(session, command))
    verbose = flag(command, "verbose")
    if args and args[0] == "-verbose":
        verbose, args = True, args[1:]
    if len(args) != 1:
        return error(command.ident, "InvocationError", "FILE:LIST? needs one pattern")
    try:
        entries = session.state.files.list(args[0])
    except FileStoreError as exc:
        return refused(command.ident, exc)
    lines = [_verbose_line(entry) if verbose else entry.name for entry in entries]
    text = "\n".join(["<quote.reply>", *lines, "</quote.reply>"])
    return Ok(ident=command.ident, text=text)


async def read_file(session: Session, command: Command) -> Outcome:
    return await read_reply(session, command)


async def read_reply(session: Session, command: Command, *, context: str = "") -> Outcome:
    """FILE:READ? and EXP:READ?: one file, under `context`, base64 or plain in a <quote> block."""
    args = await expanded_args(session, command)
    encoding = (option(command, "encoding", "plain") or "plain").lower()
    if len(args) != 1 or encoding not in ("base64", "plain"):
        return error(
            command.ident, "InvocationError", f"{command.canonical} needs one path; base64|plain"
        )
    try:
        data = session.state.files.read(context + args[0])
    except FileStoreError as exc:
        return refused(command.ident, exc)
    if encoding == "base64":
        text = base64.encodebytes(data).decode("ascii")
    else:
        text = data.decode("utf-8", errors="replace")
    return Ok(ident=command.ident, text=f"<quote>\n{text}</quote>")


async def write_file(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    body = command.body
    if len(args) != 1 or body is None:
        return error(command.ident, "InvocationError", "FILE:WRITE needs a path and a body")
    if body.tag.endswith(".base64"):
        try:
            data = base64.b64decode("".join(body.content.split()), validate=True)
        except binascii.Error as exc:
            return error(command.ident, "InvocationError", f"body is not base64: {exc}")
    else:
        data = body.content.removeprefix("\n").encode()
    try:
        session.state.files.write(args[0], data)
    except FileStoreError as exc:
        return refused(command.ident, exc)
    return Ok(ident=command.ident)


async def remove_file(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if len(args) != 1:
        return error(command.ident, "InvocationError", "FILE:REMOVE needs one path")
    try:
        session.state.files.remove(args[0])
    except FileStoreError as exc:
        return refused(command.ident, exc)
    return Ok(ident=command.ident)


async def move_file(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if len(args) != 2:
        return error(command.ident, "InvocationError", "FILE:MOVE needs a source and a target")
    try:
        session.state.files.move(args[0], args[1])
    except FileStoreError as exc:
        return refused(command.ident, exc)
    return Ok(ident=command.ident)


COMMANDS = table(
    ("FILE:LIST?", list_files, "FILE:LIST? [-verbose] PATTERN: files matching a glob"),
    ("FILE:READ?", read_file, "FILE:READ? [-encoding=base64|plain] PATH: a file's content"),
    ("FILE:WRITE", write_file, "FILE:WRITE PATH, then base64 in a quote.base64 tag: write a file"),
    ("FILE:REMOVE", remove_file, "FILE:REMOVE PATH: delete a file"),
    ("FILE:MOVE", move_file, "FILE:MOVE FROM TO: rename a file"),
)
