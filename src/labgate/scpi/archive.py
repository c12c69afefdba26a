"""Zip archives a command carries (`EXP:ZIPWRITE`): what the instrument would unpack, read from
the very bytes labgate relays.

Theory of operation
-------------------
qslib's `Experiment.run` uploads a run folder as `EXP:ZIPWRITE RUN/ <message>BASE64</message>`;
the instrument unpacks every member into `experiments:RUN/`. Nobody knows how its unzipper reads
an archive, and unzippers disagree: some walk the central directory at the end (Python's
`zipfile`), some stream the local headers from the front (Java's `ZipInputStream`, most
"unzip from a pipe" code), some find the end record by scanning back for its signature and take
the last one they see. An archive that reads one way here and another way there smuggles a member
past any check made on one reading. So `inspect` accepts only an archive every reader sees alike:

- Laid out as written, front to back with nothing between or around: member 1's local header
  and data at byte 0, each next member right after the one before, then the central directory
  listing the same members in the same order (each entry's offset is the byte where its local
  header starts, so no two entries share data and no member hides outside the directory), then
  the end record, whose comment runs exactly to the last byte. A member the central directory
  leaves out, an entry pointing at another's data (the overlapping "better zip bomb"), bytes
  before the first header (a self-extractor) or after the end: all refused.
- The local header and its central entry agree on the name (byte for byte), flags, method, CRC
  and both sizes; a data descriptor (flag bit 3) carries its signature and agrees too.
- Every member is really decompressed, in pieces, with the output capped at what the member
  declares (and the running total at `Limits.max_total_size`): a member that inflates past its
  declared size, short of it, to another CRC, or that leaves bytes after its deflate stream, is
  refused. Declared sizes are bounded before anything is inflated, and so is the member count.
- Only stored (0) and deflate (8); no encryption, no flag bits labgate does not know, zip64 size
  fields only where the header points to them, a zip64 end record only right after the central
  directory, with its locator, and saying what the plain end record says (or all ones there):
  readers that trust one and readers that trust the other see the same directory. Only extra
  fields whose meaning is known (`_EXTRAS`): the Info-ZIP Unicode path field (0x7075), for one,
  gives some readers a second name for the member.
- Names are ASCII, or UTF-8 with flag bit 11 and valid as UTF-8: a byte above 0x7F in an unmarked
  name reads as CP437 here and perhaps as (lenient, overlong) UTF-8 there, where `\\xc0\\xaf` is
  `/`. Each name then passes the caller's `member_rule` (labgate's file path rules, see
  `arguments.member_problem`), no two names are the same once case, Unicode forms and empty or
  `.` segments are folded (`Run/a`, `run//a`, `./run/a`), and no file is also a folder of another
  member.
- The Unix mode in the external attributes is that of a file or a folder, without setuid, setgid
  or sticky bits: a symbolic link member (the "zip symlink" escape) is refused.

A member that is itself an archive is data: it is not opened.

The body is base64 (qslib's `base64.encodebytes`): only the base64 alphabet in whole groups of
four on each line, `=` padding at the very end, and line breaks (`_BASE64_LINES`). Text that is
base64 in this strict sense cannot also be read as a raw zip (a zip's signature bytes are not
base64 characters).
"""

import base64
import binascii
import re
import stat
import struct
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

KIB = 1024
MIB = 1024 * KIB

# A run folder qslib uploads holds six XML files, about 20 KiB unpacked; one read back from a
# finished run holds a few hundred files and tens of MiB. 4096 members, 128 MiB per member and
# 256 MiB in all (the simulator's own bound) are far beyond that, and keep the inflation of a
# hostile archive, which runs on the gateway's event loop, to about half a second of CPU (256 MiB
# of zeros, deflate's worst ratio; bench/archive_check.py).
MAX_MEMBERS = 4096
MAX_MEMBER_SIZE = 128 * MIB
MAX_TOTAL_SIZE = 256 * MIB
# Linux allows 4096 bytes in a path; no run folder comes near 1024.
MAX_NAME = 1024
# Inflate in pieces this big: memory stays bounded whatever a member claims.
_PIECE = 64 * KIB

MemberRule = Callable[[str], str | None]
"""Why a member name may not be unpacked (`"has a '..' segment"`), or None."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on what one archive may unpack to."""

    max_members: int = MAX_MEMBERS
    max_member_size: int = MAX_MEMBER_SIZE
    max_total_size: int = MAX_TOTAL_SIZE

    def __post_init__(self) -> None:
        for name in ("max_members", "max_member_size", "max_total_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")


LIMITS = Limits()


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One member as every reader sees it: its name and unpacked size."""

    name: str
    size: int
    folder: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """The archive reads the same to every reader and unpacks within bounds."""

    members: tuple[Member, ...]
    size: int
    """The total unpacked size."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """The archive is refused: `member` (None: the archive as a whole) broke `rule`."""

    member: str | None
    rule: str
    """One of the rules in the module's docstring, in a word or two (`path`, `size`, `layout`)."""
    reason: str

    def __str__(self) -> str:
        where = "archive" if self.member is None else f"archive member {self.member[:80]!r}"
        return f"{where} {self.reason} ({self.rule})"


Verdict = Accepted | Refused


def inspect_base64(text: str, *, member_rule: MemberRule, limits: Limits = LIMITS) -> Verdict:
    """Judge the base64 text of an archive (a command's body) as `inspect` does its bytes."""
    try:
        encoded = text.encode("ascii")
    except UnicodeEncodeError as exc:
        return Refused(
            member=None, rule="base64", reason=f"holds {exc.object[exc.start]!r}, not base64"
        )
    if _BASE64_LINES.fullmatch(encoded) is None:
        return Refused(
            member=None,
            rule="base64",
            reason="is not base64 in whole groups of four per line with '=' only at its end, "
            "which every decoder (whole or line by line) reads alike",
        )
    try:
        data = base64.b64decode(encoded.translate(None, b"\r\n"), validate=True)
    except binascii.Error as exc:  # the pattern above should leave nothing for this to find
        return Refused(member=None, rule="base64", reason=f"is not strict base64 ({exc})")
    return inspect(data, member_rule=member_rule, limits=limits)


def inspect(data: bytes, *, member_rule: MemberRule, limits: Limits = LIMITS) -> Verdict:
    """Whether the zip archive `data` reads alike to every reader and unpacks within `limits`,
    with every member name passing `member_rule`."""
    try:
        return _Walk(memoryview(data), member_rule, limits).run()
    except _Refusal as refusal:
        return refusal.refused


# ---- the format ---------------------------------------------------------------------------------

# Base64 as qslib writes it (`base64.encodebytes`: lines of 76, a multiple of 4), after the
# newline that follows the opening tag: every line whole groups of four, '=' padding only at the
# very end, empty lines and CR LF allowed. A decoder that works line by line then reads what one
# that joins the lines reads. Possessive quantifiers: one linear pass over megabytes of text.
_QUADS = rb"(?:[A-Za-z0-9+/]{4})*+"
_BASE64_LINES = re.compile(
    rb"(?:" + _QUADS + rb"\r?\n)*+" + _QUADS + rb"(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
    rb"(?:\r?\n)*+"
)

_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_END = b"PK\x05\x06"
_DESCRIPTOR = b"PK\x07\x08"
_ZIP64_END = b"PK\x06\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_SIGNATURES = (_LOCAL, _CENTRAL, _END, _DESCRIPTOR, _ZIP64_END, _ZIP64_LOCATOR)

# signature, version needed, flags, method, time, date, crc, compressed, size, name, extra
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
# signature, made by, needed, flags, method, time, date, crc, compressed, size, name, extra,
# comment, disk, internal attributes, external attributes, local header offset
_CENTRAL_HEADER = struct.Struct("<4sHHHHHHIIIHHHHHII")
# signature, disk, directory's disk, entries here, entries, directory size, offset, comment
_END_RECORD = struct.Struct("<4sHHHHIIH")
_EXTRA_HEADER = struct.Struct("<HH")
# signature, size of the rest, made by, needed, disk, directory's disk, entries here, entries,
# directory size, offset (no extensible data)
_ZIP64_RECORD = struct.Struct("<4sQHHIIQQQQ")
# signature, disk of the zip64 end record, its offset, disks
_ZIP64_LOCATOR_RECORD = struct.Struct("<4sIQI")

_STORED, _DEFLATED = 0, 8
_METHODS = {_STORED: "stored", _DEFLATED: "deflate"}
_OTHER_METHODS = {
    1: "shrink",
    6: "implode",
    9: "deflate64",
    12: "bzip2",
    14: "LZMA",
    93: "zstd",
    95: "xz",
    99: "AES",
}

_ENCRYPTED = 0x0001
_DESCRIBED = 0x0008  # sizes and CRC follow the data, in a data descriptor
_STRONG_ENCRYPTION = 0x0040
_UTF8 = 0x0800
_MASKED_HEADERS = 0x2000
# Bits 1 and 2 only say how hard deflate tried; 3 and 11 are read as above.
_KNOWN_FLAGS = 0x0002 | 0x0004 | _DESCRIBED | _UTF8

_ZIP64_FIELD = 0x0001
_ZIP64_MARK = 0xFFFFFFFF
# Extra fields that hold times, owners or zip64 sizes: nothing that names or places a member.
_EXTRAS = {
    _ZIP64_FIELD: "zip64",
    0x000A: "NTFS times",
    0x5455: "extended timestamp",
    0x7875: "Unix owner",
}

# The highest "version needed to extract" Python's zipfile reads (LZMA, UTF-8 names).
_MAX_VERSION = 63

_MODE_TYPES = {0, stat.S_IFREG, stat.S_IFDIR}
_MSDOS_FOLDER = 0x10


class _Refusal(Exception):
    def __init__(self, member: str | None, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.refused = Refused(member=member, rule=rule, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    """A member as one of its headers describes it; the data's actual size and CRC for a local
    header."""

    offset: int
    raw_name: bytes
    name: str
    flags: int
    method: int
    crc: int
    compressed: int
    size: int


class _Walk:
    """One pass over the archive, front to back."""

    def __init__(self, data: memoryview, member_rule: MemberRule, limits: Limits) -> None:
        self.data = data
        self.rule = member_rule
        self.limits = limits
        self.total = 0

    def run(self) -> Accepted:
        pos = 0
        local: list[_Entry] = []
        while self._at(pos, _LOCAL):
            if len(local) == self.limits.max_members:
                raise _Refusal(
                    None, "member count", f"holds more than {self.limits.max_members} members"
                )
            entry, pos = self._local(pos)
            local.append(entry)
        directory_at = pos
        members: list[Member] = []
        while self._at(pos, _CENTRAL):
            if len(members) == len(local):
                raise _Refusal(
                    None,
                    "central directory",
                    f"lists more than the {len(local)} members its data holds",
                )
            member, pos = self._central(pos, local[len(members)])
            members.append(member)
        if len(members) < len(local):
            hidden = local[len(members)]
            raise _Refusal(
                hidden.name,
                "central directory",
                "is in the archive's data but not in its central directory",
            )
        self._end(pos, directory_at, len(members))
        self._names(members)
        return Accepted(members=tuple(members), size=self.total)

    # -- local headers and data ------------------------------------------------------------------
    def _local(self, pos: int) -> tuple[_Entry, int]:
        fields = self._struct(_LOCAL_HEADER, pos, None, "local header")
        _, version, flags, method, _, _, crc, compressed, size, name_length, extra_length = fields
        at = pos + _LOCAL_HEADER.size
        raw_name = self._bytes(at, name_length, None, "local header's name")
        name = _decode_name(raw_name, flags)
        extra = self._bytes(at + name_length, extra_length, name, "local header's extra field")
        data_at = at + name_length + extra_length
        _check_version(name, version)
        _check_flags(name, flags)
        _check_method(name, method)
        extras = _extras(name, extra, "local header")
        size, compressed = _zip64_local(name, extras, size, compressed)
        header = _Entry(
            offset=pos,
            raw_name=raw_name,
            name=name,
            flags=flags,
            method=method,
            crc=crc,
            compressed=compressed,
            size=size,
        )
        if flags & _DESCRIBED:
            return self._described(header, data_at, zip64=_ZIP64_FIELD in extras)
        self._declared(name, size)
        end = data_at + compressed
        if end > len(self.data):
            raise _Refusal(
                name, "layout", f"claims {compressed} bytes of data; the archive ends first"
            )
        actual_size, actual_crc, _ = self._unpack(name, method, data_at, end, size)
        if actual_size != size:
            raise _Refusal(
                name, "size", f"unpacks to {actual_size} bytes, not the {size} its header declares"
            )
        if actual_crc != crc:
            raise _Refusal(
                name,
                "CRC",
                f"unpacks to CRC {actual_crc:08x}, not the {crc:08x} its header declares",
            )
        return header, end

    def _described(self, header: _Entry, data_at: int, *, zip64: bool) -> tuple[_Entry, int]:
        """A member whose CRC and sizes follow its data (flag bit 3)."""
        name = header.name
        if header.method != _DEFLATED:
            raise _Refusal(
                name,
                "data descriptor",
                "is stored with its sizes after its data, "
                "so only the central directory says where it ends",
            )
        cap = min(self.limits.max_member_size, self.limits.max_total_size - self.total)
        size, crc, end = self._unpack(
            name, header.method, data_at, len(self.data), cap, exact=False
        )
        self._declared(name, size)
        if not self._at(end, _DESCRIPTOR):
            raise _Refusal(
                name,
                "data descriptor",
                "has no data descriptor signature after its "
                "data; without one a descriptor can be read two ways",
            )
        width = "Q" if zip64 else "I"
        descriptor = struct.Struct(f"<4sI{width}{width}")
        _, said_crc, said_compressed, said_size = self._struct(
            descriptor, end, name, "data descriptor"
        )
        actual = replace(header, crc=crc, compressed=end - data_at, size=size)
        for label, said, real, in_header in (
            ("CRC", said_crc, actual.crc, header.crc),
            ("compressed size", said_compressed, actual.compressed, header.compressed),
            ("size", said_size, actual.size, header.size),
        ):
            # The local header may say 0 (the usual) or the truth, nothing else.
            if said != real or in_header not in (0, real):
                raise _Refusal(
                    name,
                    "data descriptor",
                    f"declares {label} {said} (header: {in_header}); its data has {real}",
                )
        return actual, end + descriptor.size

    def _declared(self, name: str, size: int) -> None:
        if size > self.limits.max_member_size:
            raise _Refusal(
                name,
                "size",
                f"declares {size} bytes unpacked, more than "
                f"{self.limits.max_member_size} for one member",
            )
        if self.total + size > self.limits.max_total_size:
            raise _Refusal(
                name,
                "total size",
                f"brings the archive to {self.total + size} bytes "
                f"unpacked, more than {self.limits.max_total_size}",
            )
        self.total += size

    def _unpack(
        self, name: str, method: int, start: int, stop: int, cap: int, *, exact: bool = True
    ) -> tuple[int, int, int]:
        """(unpacked size, CRC, where the data ended) of the data from `start` to `stop`, or, not
        `exact`, to the end of its deflate stream before `stop`; refused once the output passes
        `cap`."""
        if method == _STORED:
            size = stop - start
            if size > cap:
                raise _Refusal(name, "size", f"holds {size} bytes, more than the {cap} declared")
            return size, zlib.crc32(self.data[start:stop]), stop
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        size = crc = 0
        pos = start
        while not inflater.eof and pos < stop:
            piece_end = min(pos + _PIECE, stop)
            piece: bytes | memoryview = self.data[pos:piece_end]
            while True:
                try:
                    out = inflater.decompress(piece, _PIECE)
                except zlib.error as exc:
                    raise _Refusal(name, "deflate", f"is not a deflate stream ({exc})") from None
                size += len(out)
                if size > cap:
                    raise _Refusal(
                        name,
                        "size",
                        f"inflates past {cap} bytes, its declared or "
                        "largest allowed size (a zip bomb)",
                    )
                crc = zlib.crc32(out, crc)
                piece = inflater.unconsumed_tail
                if inflater.eof or (not piece and len(out) < _PIECE):
                    break
            pos = piece_end
        if not inflater.eof:
            raise _Refusal(
                name, "deflate", "has a deflate stream that does not end within its data"
            )
        end = pos - len(inflater.unused_data)
        if exact and end != stop:
            raise _Refusal(
                name,
                "deflate",
                f"holds {stop - end} bytes after its deflate stream "
                "ends, which some readers would read as more data",
            )
        return size, crc, end

    # -- the central directory and its end --------------------------------------------------------
    def _central(self, pos: int, local: _Entry) -> tuple[Member, int]:
        fields = self._struct(_CENTRAL_HEADER, pos, local.name, "central directory entry")
        (
            _,
            _,
            needed,
            flags,
            method,
            _,
            _,
            crc,
            compressed,
            size,
            name_length,
            extra_length,
            comment_length,
            disk,
            _,
            attributes,
            offset,
        ) = fields
        at = pos + _CENTRAL_HEADER.size
        raw_name = self._bytes(at, name_length, local.name, "central directory entry's name")
        extra = self._bytes(
            at + name_length, extra_length, local.name, "central directory entry's extra field"
        )
        self._bytes(
            at + name_length + extra_length,
            comment_length,
            local.name,
            "central directory entry's comment",
        )
        name = local.name
        if raw_name != local.raw_name:
            shown = raw_name[:80].decode("utf-8", "replace")
            raise _Refusal(
                name, "central directory", f"is named {shown!r} in the central directory"
            )
        # The two may differ: Info-ZIP's local header needs 4.5 for a zip64 field only it has.
        _check_version(name, needed)
        extras = _extras(name, extra, "central directory entry")
        size, compressed, offset, disk = _zip64_central(
            name, extras, size, compressed, offset, disk
        )
        if disk != 0:
            raise _Refusal(name, "layout", f"starts on disk {disk}; split archives are refused")
        if offset != local.offset:
            raise _Refusal(
                name,
                "central directory",
                f"is placed at byte {offset} by the central "
                f"directory; its local header is at byte {local.offset}",
            )
        said = {
            "flags": flags,
            "method": method,
            "CRC": crc,
            "compressed size": compressed,
            "size": size,
        }
        real = {
            "flags": local.flags,
            "method": local.method,
            "CRC": local.crc,
            "compressed size": local.compressed,
            "size": local.size,
        }
        for label, value in said.items():
            if value != real[label]:
                raise _Refusal(
                    name,
                    "central directory",
                    f"has {label} {value} in the central directory and {real[label]} in its data",
                )
        folder = _check_attributes(name, attributes, size)
        end = at + name_length + extra_length + comment_length
        return Member(name=name, size=size, folder=folder), end

    def _end(self, pos: int, directory_at: int, count: int) -> None:
        directory = (count, pos - directory_at, directory_at)
        end_at = self._zip64_end(pos, directory) if self._at(pos, _ZIP64_END) else pos
        zip64 = end_at != pos
        if self._at(end_at, _ZIP64_LOCATOR):
            raise _Refusal(None, "zip64", "has a zip64 locator without a zip64 end record")
        if not self._at(end_at, _END):
            found = bytes(self.data[end_at : end_at + 4])
            raise _Refusal(
                None,
                "layout",
                f"has {found!r} at byte {end_at}, where a member, the "
                "central directory or its end record must start",
            )
        pos = end_at
        fields = self._struct(_END_RECORD, pos, None, "end record")
        _, disk, directory_disk, here, entries, size, offset, comment_length = fields
        if disk or directory_disk:
            raise _Refusal(None, "layout", "spans disks; split archives are refused")
        # With a zip64 record a field may say "see there" (all ones); else it must be the truth,
        # so a reader that trusts this record and one that trusts the zip64 record agree.
        said = {
            "members": here,
            "members in all": entries,
            "directory size": size,
            "directory offset": offset,
        }
        real = dict(zip(said, (count, count, *directory[1:]), strict=True))
        marks = {
            "members": 0xFFFF,
            "members in all": 0xFFFF,
            "directory size": _ZIP64_MARK,
            "directory offset": _ZIP64_MARK,
        }
        for label, value in said.items():
            if value != real[label] and not (zip64 and value == marks[label]):
                raise _Refusal(
                    None,
                    "end record",
                    f"gives {label} as {value}; the central directory has {real[label]}",
                )
        comment_at = pos + _END_RECORD.size
        trailing = len(self.data) - comment_at - comment_length
        if trailing < 0:
            raise _Refusal(None, "layout", "has an archive comment cut short")
        if trailing > 0:
            raise _Refusal(None, "layout", f"has {trailing} bytes after its end record")
        comment = bytes(self.data[comment_at:])
        if any(signature in comment for signature in _SIGNATURES):
            raise _Refusal(
                None,
                "layout",
                "has an archive comment holding a zip record "
                "signature, which a reader scanning back for the end would take",
            )

    def _zip64_end(self, pos: int, directory: tuple[int, int, int]) -> int:
        """Check a zip64 end record and its locator at `pos`; where the end record starts."""
        count, size, offset = directory
        fields = self._struct(_ZIP64_RECORD, pos, None, "zip64 end record")
        _, record_size, _, _, disk, directory_disk, here, entries, said_size, said_offset = fields
        if record_size != _ZIP64_RECORD.size - 12:
            raise _Refusal(None, "zip64", "has a zip64 end record with extensible data after it")
        if disk or directory_disk:
            raise _Refusal(None, "layout", "spans disks; split archives are refused")
        if (here, entries, said_size, said_offset) != (count, count, size, offset):
            raise _Refusal(
                None,
                "zip64",
                f"has a zip64 end record giving {entries} members ({here} on this disk) in "
                f"{said_size} bytes at byte {said_offset}; the central directory has {count} "
                f"in {size} bytes at byte {offset}",
            )
        at = pos + _ZIP64_RECORD.size
        if not self._at(at, _ZIP64_LOCATOR):
            raise _Refusal(None, "zip64", "has a zip64 end record without its locator after it")
        _, record_disk, record_at, disks = self._struct(
            _ZIP64_LOCATOR_RECORD, at, None, "zip64 locator"
        )
        if (record_disk, record_at, disks) != (0, pos, 1):
            raise _Refusal(
                None,
                "zip64",
                f"has a zip64 locator pointing at byte {record_at} on disk {record_disk} of "
                f"{disks}; the zip64 end record is at byte {pos}, on the one disk",
            )
        return at + _ZIP64_LOCATOR_RECORD.size

    def _names(self, members: list[Member]) -> None:
        seen: dict[str, str] = {}
        files: set[str] = set()
        for member in members:
            problem = self.rule(member.name)
            if problem is not None:
                raise _Refusal(member.name, "path", problem)
            key = _fold(member.name)
            if not key and not member.folder:
                raise _Refusal(member.name, "path", "names the folder the archive unpacks into")
            if key in seen:
                raise _Refusal(
                    member.name,
                    "duplicate",
                    f"has the same name as member "
                    f"{seen[key][:80]!r} once case, Unicode forms, empty and '.' "
                    "segments are folded",
                )
            seen[key] = member.name
            if not member.folder:
                files.add(key)
        for member in members:
            parts = _fold(member.name).split("/")
            for depth in range(1, len(parts)):
                above = "/".join(parts[:depth])
                if above in files:
                    raise _Refusal(
                        member.name,
                        "duplicate",
                        f"lies in {seen[above][:80]!r}, which is a file member",
                    )

    # -- reading ----------------------------------------------------------------------------------
    def _at(self, pos: int, signature: bytes) -> bool:
        return bytes(self.data[pos : pos + len(signature)]) == signature

    def _bytes(self, pos: int, length: int, member: str | None, what: str) -> bytes:
        if pos + length > len(self.data):
            raise _Refusal(member, "layout", f"has its {what} cut short by the archive's end")
        return bytes(self.data[pos : pos + length])

    def _struct(
        self, layout: struct.Struct, pos: int, member: str | None, what: str
    ) -> tuple[int, ...]:
        raw = self._bytes(pos, layout.size, member, what)
        return tuple(layout.unpack(raw))


# ---- one member's fields ------------------------------------------------------------------------


def _decode_name(raw: bytes, flags: int) -> str:
    shown = raw[:80].decode("ascii", "backslashreplace")
    if len(raw) > MAX_NAME:
        raise _Refusal(shown, "path", f"is {len(raw)} bytes long, more than {MAX_NAME}")
    if not raw:
        raise _Refusal("", "path", "has an empty name")
    if flags & _UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refusal(
                shown, "name encoding", f"is marked UTF-8 but is not ({exc.reason})"
            ) from None
    if not raw.isascii():
        raise _Refusal(
            shown,
            "name encoding",
            "holds bytes above 0x7F without the UTF-8 flag; readers decode those differently",
        )
    return raw.decode("ascii")


def _check_version(name: str, version: int) -> None:
    if version > _MAX_VERSION:
        raise _Refusal(
            name,
            "version",
            f"needs zip version {version // 10}.{version % 10} to "
            "extract; readers that stop at 6.3 (Python's) and those that go on "
            "would see different archives",
        )


def _check_flags(name: str, flags: int) -> None:
    if flags & (_ENCRYPTED | _STRONG_ENCRYPTION | _MASKED_HEADERS):
        raise _Refusal(name, "encryption", "is encrypted; labgate cannot see what it unpacks to")
    unknown = flags & ~_KNOWN_FLAGS
    if unknown:
        raise _Refusal(
            name,
            "flags",
            f"sets general purpose flag bits {unknown:#06x}, whose meaning labgate does not know",
        )


def _check_method(name: str, method: int) -> None:
    if method not in _METHODS:
        known = _OTHER_METHODS.get(method)
        what = f"{method} ({known})" if known else str(method)
        raise _Refusal(
            name,
            "compression method",
            f"uses compression method {what}; only stored (0) and deflate (8) are read",
        )


def _extras(name: str, extra: bytes, where: str) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(extra):
        if pos + _EXTRA_HEADER.size > len(extra):
            raise _Refusal(name, "extra field", f"has a {where} extra field cut short")
        kind, length = _EXTRA_HEADER.unpack_from(extra, pos)
        pos += _EXTRA_HEADER.size
        if pos + length > len(extra):
            raise _Refusal(name, "extra field", f"has a {where} extra field {kind:#06x} cut short")
        if kind not in _EXTRAS:
            raise _Refusal(
                name,
                "extra field",
                f"carries extra field {kind:#06x} in its {where}; "
                f"only {', '.join(sorted(_EXTRAS.values()))} fields are known to "
                "name or place nothing",
            )
        if kind in fields:
            raise _Refusal(name, "extra field", f"carries extra field {kind:#06x} twice")
        fields[kind] = extra[pos : pos + length]
        pos += length
    return fields


def _zip64_local(
    name: str, extras: dict[int, bytes], size: int, compressed: int
) -> tuple[int, int]:
    """(size, compressed size), from the zip64 field where the header says 0xFFFFFFFF."""
    field = extras.get(_ZIP64_FIELD)
    marked = (size == _ZIP64_MARK, compressed == _ZIP64_MARK)
    if field is None:
        if any(marked):
            raise _Refusal(name, "zip64", "marks a size as zip64 but carries no zip64 field")
        return size, compressed
    if not all(marked) or len(field) != 16:
        raise _Refusal(
            name,
            "zip64",
            "has a zip64 field in its local header that is not the two sizes its header points to",
        )
    size64, compressed64 = struct.unpack("<QQ", field)
    return size64, compressed64


def _zip64_central(
    name: str, extras: dict[int, bytes], size: int, compressed: int, offset: int, disk: int
) -> tuple[int, int, int, int]:
    """The entry's size, compressed size, offset and disk, with the zip64 field read in the order
    the format gives, for exactly the header fields that say 0xFFFFFFFF (0xFFFF for the disk)."""
    values = [size, compressed, offset, disk]
    marks = [size == _ZIP64_MARK, compressed == _ZIP64_MARK, offset == _ZIP64_MARK, disk == 0xFFFF]
    widths = [8, 8, 8, 4]
    field = extras.get(_ZIP64_FIELD)
    if field is None:
        if any(marks):
            raise _Refusal(
                name, "zip64", "marks a central directory field as zip64 but carries no zip64 field"
            )
        return size, compressed, offset, disk
    needed = sum(width for width, marked in zip(widths, marks, strict=True) if marked)
    if not needed or len(field) != needed:
        raise _Refusal(
            name,
            "zip64",
            f"has a {len(field)}-byte zip64 field in the central "
            f"directory; the fields its entry points to take {needed}",
        )
    pos = 0
    for index, (width, marked) in enumerate(zip(widths, marks, strict=True)):
        if marked:
            values[index] = int.from_bytes(field[pos : pos + width], "little")
            pos += width
    return values[0], values[1], values[2], values[3]


def _check_attributes(name: str, attributes: int, size: int) -> bool:
    """Whether the member is a folder; refused unless a plain file or folder. The mode is judged
    whatever system the archive says made it: some readers never look."""
    mode = attributes >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise _Refusal(
            name,
            "symlink",
            "is a symbolic link (Unix mode in its external "
            "attributes), which would unpack to a way out of the folder",
        )
    if kind not in _MODE_TYPES:
        raise _Refusal(
            name,
            "file type",
            f"has Unix file type {kind:#o} (external attributes); "
            "only plain files and folders are unpacked",
        )
    if mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
        raise _Refusal(
            name, "file mode", f"has mode {mode & 0o7777:#o}, with setuid, setgid or sticky bits"
        )
    folder = name.endswith("/")
    says_folder = kind == stat.S_IFDIR or bool(attributes & _MSDOS_FOLDER)
    # A writer may leave the attributes empty (Java's does): then the trailing '/' decides.
    if (says_folder and not folder) or (folder and kind == stat.S_IFREG):
        raise _Refusal(
            name,
            "file type",
            "is a folder by its attributes or by its name but not "
            "by both; readers differ on which it is",
        )
    if folder and size:
        raise _Refusal(name, "file type", f"is a folder holding {size} bytes")
    return folder


def _fold(name: str) -> str:
    """The name as a file system and a careless unzipper may see it: case and Unicode forms
    folded, empty and `.` segments (`a//b`, `./a`, a trailing `/`) dropped."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "/".join(part for part in folded.split("/") if part not in ("", "."))
