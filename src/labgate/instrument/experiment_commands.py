"""Experiment folders (`experiments:` in the file store): what qslib's `Experiment.run` needs.

EXP:NEW makes a run's folder, EXP:ZIPWRITE unpacks a zip of the run's files into it, EXP:LIST?
and EXP:READ? look inside, EXP:DELETE removes a folder. Every member of an uploaded zip is
resolved through the file store, so a member named `../../x` (zip slip) is refused like any
other escaping path, and the unpacked size is bounded (zip bomb).
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from typing import TYPE_CHECKING

from labgate.instrument.dispatch import table
from labgate.instrument.errors import FileStoreError
from labgate.instrument.expansion import expanded_args
from labgate.instrument.file_commands import read_reply, refused
from labgate.instrument.outcomes import Outcome, error
from labgate.scpi.messages import Command, Ok

if TYPE_CHECKING:
    from labgate.instrument.session import Session

CONTEXT = "experiments:"
# A run folder holds an experiment.xml, plate setup and a few small files; 256 MiB unpacked is far
# beyond any real one and keeps a small zip from filling the disk.
MAX_UNPACKED = 256 * 1024 * 1024


async def new_experiment(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if not args:
        return error(command.ident, "InvocationError", "EXP:NEW needs a run title")
    try:
        session.state.files.make_folder(CONTEXT + args[0])
    except FileStoreError as exc:
        return refused(command.ident, exc)
    return Ok(ident=command.ident)


async def delete_experiment(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if len(args) != 1 or not args[0].strip("/"):
        return error(command.ident, "InvocationError", "EXP:DELETE needs one run title")
    try:
        session.state.files.remove(CONTEXT + args[0])
    except FileStoreError as exc:
        return refused(command.ident, exc)
    return Ok(ident=command.ident)


async def list_experiments(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    try:
        entries = session.state.files.list(CONTEXT + (args[0] if args else "*"))
    except FileStoreError as exc:
        return refused(command.ident, exc)
    lines = [
        entry.name.removeprefix(CONTEXT) + ("/" if entry.kind == "folder" else "")
        for entry in entries
    ]
    return Ok(ident=command.ident, text="\n".join(["<quote.reply>", *lines, "</quote.reply>"]))


async def read_experiment_file(session: Session, command: Command) -> Outcome:
    return await read_reply(session, command, context=CONTEXT)


async def unpack_into_experiment(session: Session, command: Command) -> Outcome:
    args = await expanded_args(session, command)
    if len(args) != 1 or command.body is None:
        return error(command.ident, "InvocationError", "EXP:ZIPWRITE needs a folder and a body")
    try:
        archive = zipfile.ZipFile(
            io.BytesIO(base64.b64decode("".join(command.body.content.split()), validate=True))
        )
    except (binascii.Error, zipfile.BadZipFile) as exc:
        return error(command.ident, "InvocationError", f"body is not a base64 zip: {exc}")
    members = [member for member in archive.infolist() if not member.is_dir()]
    if sum(member.file_size for member in members) > MAX_UNPACKED:
        return error(command.ident, "IOError", f"zip unpacks past {MAX_UNPACKED} bytes")
    folder = CONTEXT + args[0].rstrip("/") + "/"
    store = session.state.files
    try:
        # Resolve every member first: nothing is written unless all of them stay inside.
        for member in members:
            store.resolve(folder + member.filename)
        for member in members:
            store.write(folder + member.filename, archive.read(member))
    except FileStoreError as exc:
        return refused(command.ident, exc)
    return Ok(ident=command.ident)


COMMANDS = table(
    ("EXP:NEW", new_experiment, "EXP:NEW TITLE [TEMPLATE]: make a run folder"),
    ("EXP:DELETE", delete_experiment, "EXP:DELETE TITLE: remove a run folder"),
    (
        "EXP:LIST?",
        list_experiments,
        "EXP:LIST? [PATTERN]: run folders and files (folders end in /)",
    ),
    (
        "EXP:READ?",
        read_experiment_file,
        "EXP:READ? [-encoding=base64|plain] PATH: a file in a run folder",
    ),
    (
        "EXP:ZIPWRITE",
        unpack_into_experiment,
        "EXP:ZIPWRITE FOLDER, then a base64 zip in a message tag: unpack",
    ),
)
