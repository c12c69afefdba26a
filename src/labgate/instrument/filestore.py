"""The instrument's file store: `context:relative/path` names mapped under one root directory.

The instrument names files like `public_run_complete:run_one.eds`: a context (a top-level folder)
and a path inside it. Every name is resolved to a real path and refused unless it stays inside the
root, after symlinks are followed: a client must not read or write anything else on the host.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from labgate.instrument.errors import FileMissing, FileStoreError, PathEscape
from labgate.instrument.storage import write_atomically

_CONTEXT = re.compile(r"[A-Za-z0-9_]+")
_GLOB = re.compile(r"[*?\[]")
# Contexts the real instrument has; made at start so listings of them work on a fresh store.
STANDARD_CONTEXTS = ("public_run_complete", "experiments", "protocols", "calibrations")


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One listed file or folder, named as the instrument names it."""

    name: str
    kind: str  # "file" or "folder"
    size: int
    mtime: float
    atime: float
    ctime: float


class FileStore:
    """Files under `root`, addressed by instrument names; nothing outside `root` is reachable."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()
        for context in STANDARD_CONTEXTS:
            (self._root / context).mkdir(exist_ok=True)

    @property
    def root(self) -> Path:
        return self._root

    def resolve(self, name: str) -> Path:
        """The real path for an instrument name, or `PathEscape` if it would leave the store."""
        context, _, inner = name.rpartition(":") if ":" in name else ("", "", name)
        if context and not _CONTEXT.fullmatch(context):
            raise PathEscape(f"{name!r}: context {context!r} is not a plain word")
        if "\x00" in inner or "\\" in inner:
            raise PathEscape(f"{name!r}: expected a path without NUL or backslash")
        relative = PurePosixPath(inner)
        if relative.is_absolute() or ".." in relative.parts:
            raise PathEscape(f"{name!r}: expected a relative path inside the file store")
        candidate = self._root.joinpath(context, *relative.parts)
        # resolve() follows symlinks, so a link planted inside the store cannot point out of it.
        real = candidate.resolve()
        if real != self._root and not real.is_relative_to(self._root):
            raise PathEscape(f"{name!r}: resolves outside the file store")
        return real

    def name_of(self, path: Path) -> str:
        relative = path.relative_to(self._root)
        parts = relative.parts
        if len(parts) == 1:
            return parts[0]
        return f"{parts[0]}:{'/'.join(parts[1:])}"

    def list(self, pattern: str) -> list[Entry]:
        """Entries of one folder whose names match the glob after the last `/` (or `:`).

        A pattern without glob characters that names a folder lists what the folder holds, as
        `ls` does: qslib's recursive `list_files` asks again with each folder's own listed name
        (`experiments:RUN/apldbio`, no trailing slash) and would recurse forever on the folder.
        """
        folder_name, glob = _split_pattern(pattern)
        if glob and not _GLOB.search(glob) and self.resolve(pattern).is_dir():
            folder_name, glob = pattern, ""
        folder = self.resolve(folder_name)
        if not folder.is_dir():
            raise FileMissing(f"{pattern!r}: folder {folder_name!r} does not exist")
        entries = []
        for child in sorted(folder.iterdir()):
            if child.name.startswith(".") or not fnmatch.fnmatchcase(child.name, glob or "*"):
                continue
            info = child.stat()
            entries.append(
                Entry(
                    name=self.name_of(child),
                    kind="folder" if child.is_dir() else "file",
                    size=info.st_size,
                    mtime=info.st_mtime,
                    atime=info.st_atime,
                    ctime=info.st_ctime,
                )
            )
        return entries

    def read(self, name: str) -> bytes:
        path = self.resolve(name)
        if not path.is_file():
            raise FileMissing(f"{name!r}: no such file")
        return path.read_bytes()

    def write(self, name: str, data: bytes) -> None:
        path = self.resolve(name)
        if path == self._root or path.parent == self._root:
            raise FileStoreError(f"{name!r}: expected context:path, a file inside a context")
        if path.is_dir():
            raise FileStoreError(f"{name!r}: is a folder, expected a file name")
        write_atomically(path, data)

    def make_folder(self, name: str) -> None:
        path = self.resolve(name)
        if path.parent == self._root or path == self._root:
            raise FileStoreError(f"{name!r}: expected context:folder, a folder inside a context")
        path.mkdir(parents=True, exist_ok=True)

    def remove(self, name: str) -> None:
        path = self.resolve(name)
        if path.parent == self._root or path == self._root:
            raise FileStoreError(f"{name!r}: a context cannot be removed")
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            raise FileMissing(f"{name!r}: no such file")

    def move(self, source: str, destination: str) -> None:
        origin = self.resolve(source)
        target = self.resolve(destination)
        if not origin.exists():
            raise FileMissing(f"{source!r}: no such file")
        if target.parent == self._root or target == self._root:
            raise FileStoreError(f"{destination!r}: expected context:path, a file inside a context")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(origin, target)


def _split_pattern(pattern: str) -> tuple[str, str]:
    """`ctx:sub/*.eds` -> (`ctx:sub`, `*.eds`); `ctx:*` -> (`ctx:`, `*`); `ctx:` -> (`ctx:`, ``)."""
    head, slash, glob = pattern.rpartition("/")
    if slash:
        return head, glob
    context, colon, glob = pattern.rpartition(":")
    if colon:
        return context + ":", glob
    return "", pattern
