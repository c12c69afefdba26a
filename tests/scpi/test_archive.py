"""Archives an attacker builds by hand: every field of a zip made to lie, one at a time, and the
archives qslib and Python's zipfile really write, which pass."""

from __future__ import annotations

import base64
import io
import shutil
import stat
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qslib import Experiment, Protocol, Stage, Step

from labgate.scpi import archive
from labgate.scpi.access import CONTROLLER, FULL, LABGATE, Allowed, Denied, check
from labgate.scpi.archive import Accepted, Limits, Refused
from labgate.scpi.arguments import member_problem
from labgate.scpi.messages import parse_command

# ---- zips written byte by byte ------------------------------------------------------------------

STORED, DEFLATED = 0, 8
FILE_MODE = 0o100644 << 16
ZIP64 = 0xFFFFFFFF


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One member. Unset overrides are written as the data says."""

    name: bytes
    data: bytes = b"x"
    method: int = DEFLATED
    flags: int = 0
    attributes: int = FILE_MODE
    payload: bytes | None = None  # the bytes stored, instead of data compressed by `method`
    crc: int | None = None
    size: int | None = None
    compressed: int | None = None
    central_name: bytes | None = None
    central_crc: int | None = None
    central_size: int | None = None
    central_compressed: int | None = None
    central_method: int | None = None
    local_extra: bytes = b""
    central_extra: bytes = b""
    descriptor: bytes | None = None  # written after the data when flag bit 3 is set
    in_central: bool = True

    def stored(self) -> bytes:
        if self.payload is not None:
            return self.payload
        if self.method == DEFLATED:
            packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            return packer.compress(self.data) + packer.flush()
        return self.data


@dataclass(kw_only=True)
class Layout:
    """Where things go: bytes before and after, the comment, central entries' offsets."""

    before: bytes = b""
    after: bytes = b""
    comment: bytes = b""
    offsets: list[int] | None = None  # per central entry, instead of the real ones
    order: list[int] | None = None  # central entries by member index
    end_count: int | None = None
    before_end: bytes = b""  # between the central directory and the end record
    extra_central: list[bytes] = field(default_factory=list)


def extra(kind: int, data: bytes) -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def build(specs: list[Spec], layout: Layout | None = None) -> bytes:
    layout = layout or Layout()
    out = bytearray(layout.before)
    offsets: list[int] = []
    for spec in specs:
        offsets.append(len(out))
        stored = spec.stored()
        crc = zlib.crc32(spec.data) if spec.crc is None else spec.crc
        size = len(spec.data) if spec.size is None else spec.size
        compressed = len(stored) if spec.compressed is None else spec.compressed
        if spec.flags & 0x08 and spec.crc is None:
            crc = size = compressed = 0
        out += struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            20,
            spec.flags,
            spec.method,
            0,
            0x21,
            crc,
            compressed,
            size,
            len(spec.name),
            len(spec.local_extra),
        )
        out += spec.name + spec.local_extra + stored
        if spec.descriptor is not None:
            out += spec.descriptor
    directory_at = len(out)
    order = layout.order if layout.order is not None else list(range(len(specs)))
    count = 0
    for position, index in enumerate(order):
        spec = specs[index]
        if not spec.in_central:
            continue
        stored = spec.stored()

        def pick(override: int | None, local: int | None, real: int) -> int:
            if override is not None:
                return override
            return real if local is None else local

        crc = pick(spec.central_crc, spec.crc, zlib.crc32(spec.data))
        size = pick(spec.central_size, spec.size, len(spec.data))
        compressed = pick(spec.central_compressed, spec.compressed, len(stored))
        name = spec.name if spec.central_name is None else spec.central_name
        method = spec.method if spec.central_method is None else spec.central_method
        offset = offsets[index] if layout.offsets is None else layout.offsets[position]
        out += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            0x31E,
            20,
            spec.flags,
            method,
            0,
            0x21,
            crc,
            compressed,
            size,
            len(name),
            len(spec.central_extra),
            0,
            0,
            0,
            spec.attributes,
            offset,
        )
        out += name + spec.central_extra
        count += 1
    for entry in layout.extra_central:
        out += entry
    directory_size = len(out) - directory_at
    out += layout.before_end
    entries = count if layout.end_count is None else layout.end_count
    out += struct.pack(
        "<4sHHHHIIH",
        b"PK\x05\x06",
        0,
        0,
        entries,
        entries,
        directory_size,
        directory_at,
        len(layout.comment),
    )
    out += layout.comment + layout.after
    return bytes(out)


def one(name: bytes = b"a.txt", **kw: object) -> bytes:
    return build([Spec(name=name, **kw)])  # type: ignore[arg-type]


def inspect(data: bytes, limits: Limits = archive.LIMITS) -> Accepted | Refused:
    return archive.inspect(data, member_rule=member_problem, limits=limits)


def refused(data: bytes, limits: Limits = archive.LIMITS) -> Refused:
    verdict = inspect(data, limits)
    assert isinstance(verdict, Refused), verdict
    return verdict


def python_zip(members: dict[str, bytes], **kw: object) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, **kw) as written:  # type: ignore[arg-type]
        for name, data in members.items():
            written.writestr(name, data)
    return buffer.getvalue()


def qslib_archive() -> bytes:
    protocol = Protocol([Stage([Step(30, 95.0)]), Stage([Step(20, 60.0)], repeat=10)])
    buffer = io.BytesIO()
    Experiment(name="qPCR run 7", protocol=protocol).save_file(buffer)
    return buffer.getvalue()


def zipwrite(data: bytes, folder: str = "qPCR_run_7/") -> bytes:
    # byte for byte what qslib's Experiment._populate_folder sends
    return (
        b"7 EXP:ZIPWRITE "
        + folder.encode()
        + b" <message>\n"
        + base64.encodebytes(data)
        + b"</message>"
    )


# ---- what real writers make passes --------------------------------------------------------------


def test_qslibs_own_run_folder_passes_at_controller() -> None:
    data = qslib_archive()
    verdict = inspect(data)
    assert isinstance(verdict, Accepted)
    assert {member.name for member in verdict.members} >= {
        "apldbio/sds/experiment.xml",
        "apldbio/sds/tcprotocol.xml",
        "apldbio/sds/plate_setup.xml",
    }
    assert verdict.size == sum(
        info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist()
    )
    assert check(parse_command(zipwrite(data)), CONTROLLER, LABGATE) == Allowed(required=CONTROLLER)


class _Pipe(io.RawIOBase):
    """An unseekable file: zipfile then writes data descriptors (flag bit 3)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.data += data
        return len(data)


def test_what_pythons_zipfile_writes_passes() -> None:
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as written:
        written.writestr("run/a.xml", b"<a/>" * 100)
        written.writestr("run/empty.txt", b"")
        with written.open("run/streamed.bin", "w") as stream:
            stream.write(bytes(range(256)) * 40)
    assert isinstance(inspect(bytes(pipe.data)), Accepted)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as written:
        written.writestr("stored.txt", b"plain")
        written.mkdir("folder")
        written.writestr("folder/inside.txt", b"x")
        with written.open("big64.txt", "w", force_zip64=True) as stream:
            stream.write(b"zip64 sizes, honest ones")
    verdict = inspect(buffer.getvalue())
    assert isinstance(verdict, Accepted), verdict
    assert [m.folder for m in verdict.members] == [False, True, False, False]


def test_an_empty_archive_passes() -> None:
    assert inspect(build([])) == Accepted(members=(), size=0)


def test_a_zip_inside_the_archive_is_data_and_passes() -> None:
    inner = python_zip({"../../etc/passwd": b"root::0:0"})
    verdict = inspect(python_zip({"run/inner.zip": inner}))
    assert isinstance(verdict, Accepted)
    assert verdict.members[0].size == len(inner)


# ---- member names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (b"../../x", "'..' segment"),
        (b"run/../../../x", "'..' segment"),
        (b"..", "'..' segment"),
        (b"/etc/passwd", "is absolute"),
        (b"~/.profile", "is absolute"),
        (b"..\\..\\x", "'\\\\'"),
        (b"run\\x", "'\\\\'"),
        (b"C:/Windows/x", "context"),
        (b"C:x", "context"),
        (b"a\x00b", "control character"),
        (b"a\nb", "control character"),
        (b"a\rb", "control character"),
        (b"${LogFolder}/x", "'$'"),
        (b'a"b', "'\"'"),
        (b"<q>../x</q>", "'<'"),
        (b"'../x'", '"\'"'),
        (b"run/.*", "glob segment"),
    ],
)
def test_a_member_whose_name_leaves_the_folder_is_refused(name: bytes, problem: str) -> None:
    verdict = refused(build([Spec(name=b"ok.txt"), Spec(name=name)]))
    assert verdict.rule == "path"
    assert verdict.member == name.decode()
    assert problem in verdict.reason


def test_a_unicode_name_that_folds_to_dot_dot_is_refused() -> None:
    # U+FF0E FULLWIDTH FULL STOP twice, marked UTF-8: NFKC reads '../x'
    verdict = refused(one("\uff0e\uff0e/x".encode(), flags=0x0800))
    assert verdict.rule == "path"
    assert "NFKC" in verdict.reason


@pytest.mark.parametrize(
    "name",
    [
        b"..\xc0\xaf..\xc0\xafetc",  # overlong '/' to a lenient UTF-8 reader, CP437 here
        b"caf\xe9.txt",
    ],
)
def test_a_name_that_is_not_ascii_and_not_marked_utf8_is_refused(name: bytes) -> None:
    verdict = refused(one(name))
    assert verdict.rule == "name encoding"


def test_a_name_marked_utf8_that_is_not_utf8_is_refused() -> None:
    verdict = refused(one(b"..\xc0\xaf..\xc0\xafx", flags=0x0800))
    assert verdict.rule == "name encoding"
    assert "marked UTF-8" in verdict.reason


def test_a_name_marked_utf8_that_is_utf8_passes() -> None:
    assert isinstance(inspect(one("run/caf\u00e9.txt".encode(), flags=0x0800)), Accepted)


def test_an_empty_name_is_refused() -> None:
    assert refused(one(b"")).rule == "path"


def test_a_name_longer_than_the_bound_is_refused() -> None:
    verdict = refused(one(b"a/" * 600))
    assert "more than 1024" in verdict.reason


@pytest.mark.parametrize(
    ("names", "second"),
    [
        ([b"a.txt", b"a.txt"], "a.txt"),
        ([b"run/A.xml", b"run/a.xml"], "run/a.xml"),
        ([b"run/x", b"run/x/"], "run/x/"),
        (["run/\u212b".encode(), "run/\u00c5".encode()], "run/\u00c5"),  # NFKC: the same letter
        ([b"run/x", b"run//x"], "run//x"),
        ([b"run/x", b"./run/x"], "./run/x"),
        ([b"run/x", b"run/./x"], "run/./x"),
    ],
)
def test_two_members_of_the_same_name_are_refused(names: list[bytes], second: str) -> None:
    specs = [
        Spec(
            name=name,
            flags=0x0800,
            data=b"" if name.endswith(b"/") else b"x",
            attributes=(0o40755 << 16 | 0x10) if name.endswith(b"/") else FILE_MODE,
        )
        for name in names
    ]
    verdict = refused(build(specs))
    assert verdict.rule == "duplicate"
    assert verdict.member == second


def test_a_file_named_for_the_folder_itself_is_refused() -> None:
    for name in (b".", b"./."):
        verdict = refused(one(name))
        assert verdict.rule == "path"


def test_a_member_below_a_file_member_is_refused() -> None:
    verdict = refused(build([Spec(name=b"run/x"), Spec(name=b"run/x/y")]))
    assert verdict.rule == "duplicate"
    assert verdict.member == "run/x/y"


# ---- what a member is -----------------------------------------------------------------------


def test_a_symlink_member_is_refused() -> None:
    verdict = refused(one(b"run/link", data=b"/etc", attributes=(stat.S_IFLNK | 0o777) << 16))
    assert (verdict.rule, verdict.member) == ("symlink", "run/link")


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK])
def test_a_device_fifo_or_socket_member_is_refused(kind: int) -> None:
    assert refused(one(b"run/dev", attributes=(kind | 0o600) << 16)).rule == "file type"


@pytest.mark.parametrize("bits", [stat.S_ISUID, stat.S_ISGID, stat.S_ISVTX])
def test_a_setuid_setgid_or_sticky_member_is_refused(bits: int) -> None:
    assert refused(one(b"run/tool", attributes=(stat.S_IFREG | bits | 0o755) << 16)).rule == (
        "file mode"
    )


def test_a_folder_by_attributes_without_a_slash_or_with_content_is_refused() -> None:
    assert refused(one(b"run/d", data=b"", attributes=0o40755 << 16)).rule == "file type"
    assert refused(one(b"run/d", data=b"", attributes=0x10)).rule == "file type"
    assert refused(one(b"run/d/", data=b"data", attributes=0o40755 << 16 | 0x10)).rule == (
        "file type"
    )
    assert refused(one(b"run/d/", data=b"", attributes=FILE_MODE)).rule == "file type"


def test_a_folder_with_no_attributes_is_read_by_its_slash() -> None:
    verdict = inspect(one(b"run/d/", data=b"", attributes=0))
    assert isinstance(verdict, Accepted) and verdict.members[0].folder


# ---- sizes: bombs -------------------------------------------------------------------------------


def test_a_bomb_that_declares_a_small_size_is_refused_once_it_inflates_past_it() -> None:
    bomb = bytes(64 * 1024 * 1024)
    verdict = refused(one(b"run/bomb", data=bomb, size=1000, central_size=1000))
    assert (verdict.rule, verdict.member) == ("size", "run/bomb")
    assert "inflates past 1000 bytes" in verdict.reason


def test_a_bomb_that_lies_only_in_its_central_directory_is_refused() -> None:
    # the local header is honest about 64 MiB, the central directory says 1000: a reader that
    # trusts the directory's size to bound its work is fooled, the comparison is not
    verdict = refused(one(b"run/bomb", data=bytes(64 * 1024 * 1024), central_size=1000))
    assert verdict.rule == "central directory"
    assert "size 1000" in verdict.reason


def test_a_bomb_whose_headers_agree_on_a_lie_is_refused_by_inflating_it() -> None:
    # both headers say 10 bytes and the right CRC of those 10, the data is 4 MiB of zeros
    lie = Spec(name=b"run/bomb", data=bytes(4 * 1024 * 1024), size=10, crc=zlib.crc32(bytes(10)))
    verdict = refused(build([lie]))
    assert verdict.rule == "size"


def test_a_member_declaring_more_than_the_bound_is_refused_before_inflating() -> None:
    verdict = refused(one(b"run/huge", size=archive.MAX_MEMBER_SIZE + 1))
    assert verdict.rule == "size"
    assert "declares" in verdict.reason


def test_members_declaring_more_than_the_total_bound_together_are_refused() -> None:
    limits = Limits(max_total_size=2500)
    specs = [Spec(name=f"run/{n}".encode(), data=bytes(1000)) for n in range(3)]
    verdict = refused(build(specs), limits)
    assert (verdict.rule, verdict.member) == ("total size", "run/2")


def test_a_described_bomb_is_capped_at_the_bound() -> None:
    data = bytes(3 * 1024 * 1024)
    spec = Spec(name=b"run/bomb", data=data, flags=0x08, descriptor=b"PK\x07\x08" + bytes(12))
    verdict = refused(build([spec]), Limits(max_member_size=1024 * 1024))
    assert verdict.rule == "size"


def test_a_member_that_inflates_short_of_its_declared_size_is_refused() -> None:
    verdict = refused(one(b"run/x", data=b"abc", size=4, central_size=4))
    assert verdict.rule == "size"


def test_a_stored_member_whose_data_is_longer_than_declared_is_refused() -> None:
    verdict = refused(one(b"run/x", data=b"abcdef", method=0, size=3, central_size=3))
    assert verdict.rule == "size"


def test_more_members_than_the_bound_are_refused() -> None:
    specs = [Spec(name=f"run/{n}".encode(), data=b"") for n in range(archive.MAX_MEMBERS + 1)]
    verdict = refused(build(specs))
    assert verdict.rule == "member count"
    assert str(archive.MAX_MEMBERS) in verdict.reason
    assert isinstance(inspect(build(specs[:-1])), Accepted)


def test_a_crc_that_does_not_match_the_data_is_refused() -> None:
    verdict = refused(one(b"run/x", data=b"abc", crc=1234))
    assert verdict.rule == "CRC"


# ---- the local headers and the central directory agree -------------------------------------------


def test_a_member_hidden_from_the_central_directory_is_refused() -> None:
    verdict = refused(build([Spec(name=b"run/ok"), Spec(name=b"../../hidden", in_central=False)]))
    assert (verdict.rule, verdict.member) == ("central directory", "../../hidden")


def test_a_name_that_differs_between_local_header_and_central_directory_is_refused() -> None:
    verdict = refused(one(b"../../etc/cron.d/x", central_name=b"run/innocent.txt"))
    assert verdict.rule == "central directory"
    assert verdict.member == "../../etc/cron.d/x"
    verdict = refused(one(b"run/innocent.txt", central_name=b"../../etc/cron.d/x"))
    assert verdict.rule == "central directory"


@pytest.mark.parametrize(
    "lie",
    [{"central_method": 0}, {"central_crc": 1}, {"central_compressed": 3}],
)
def test_a_field_that_differs_between_the_headers_is_refused(lie: dict[str, int]) -> None:
    assert refused(one(b"run/x", data=b"some data", **lie)).rule == "central directory"


def test_two_directory_entries_for_one_member_are_refused() -> None:
    # the overlapping "better zip bomb": many entries, one local header and its data
    specs = [Spec(name=b"run/a"), Spec(name=b"run/b")]
    verdict = refused(build(specs, Layout(offsets=[0, 0])))
    assert verdict.rule == "central directory"
    assert verdict.member == "run/b"


def test_a_directory_in_another_order_than_the_data_is_refused() -> None:
    specs = [Spec(name=b"run/a"), Spec(name=b"run/b")]
    assert refused(build(specs, Layout(order=[1, 0]))).rule == "central directory"


def test_an_end_record_that_miscounts_is_refused() -> None:
    assert refused(build([Spec(name=b"run/a")], Layout(end_count=2))).rule == "end record"


def test_more_directory_entries_than_members_are_refused() -> None:
    spare = build([Spec(name=b"run/b")])
    entry = spare[spare.index(b"PK\x01\x02") : spare.index(b"PK\x05\x06")]
    assert refused(build([Spec(name=b"run/a")], Layout(extra_central=[entry]))).rule == (
        "central directory"
    )


@pytest.mark.parametrize(
    "layout",
    [
        Layout(before=b"MZ\x90\x00 a self-extractor stub"),
        Layout(after=b"trailing"),
        Layout(before_end=b"junk"),
    ],
)
def test_bytes_around_or_between_the_records_are_refused(layout: Layout) -> None:
    assert refused(build([Spec(name=b"run/a")], layout)).rule == "layout"


def test_a_comment_holding_a_second_end_record_is_refused() -> None:
    fake = build([Spec(name=b"../../x")])
    verdict = refused(build([Spec(name=b"run/a")], Layout(comment=fake[-22:])))
    assert verdict.rule == "layout"
    assert "signature" in verdict.reason


def test_a_plain_comment_passes() -> None:
    assert isinstance(
        inspect(build([Spec(name=b"run/a")], Layout(comment=b"made by hand"))), Accepted
    )


def test_bytes_after_a_deflate_stream_inside_a_member_are_refused() -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = packer.compress(b"abc") + packer.flush() + b"PK\x03\x04smuggled"
    verdict = refused(one(b"run/x", data=b"abc", payload=payload))
    assert verdict.rule == "deflate"


def test_a_deflate_stream_cut_short_is_refused() -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = (packer.compress(bytes(range(256)) * 64) + packer.flush())[:-20]
    assert refused(one(b"run/x", data=bytes(range(256)) * 64, payload=payload)).rule == "deflate"


def test_a_truncated_archive_is_refused() -> None:
    data = python_zip({"run/a": b"abc" * 100})
    for cut in (5, 40, len(data) // 2, len(data) - 30, len(data) - 1):
        assert isinstance(inspect(data[:cut]), Refused)


def test_bytes_that_are_not_a_zip_are_refused() -> None:
    assert refused(b"not a zip at all").rule == "layout"
    assert refused(b"").rule == "layout"


# ---- data descriptors ------------------------------------------------------------------------


def _described(data: bytes, **kw: object) -> Spec:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = packer.compress(data) + packer.flush()
    descriptor = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(data), len(payload), len(data))
    options: dict[str, object] = {"descriptor": descriptor, **kw}
    return Spec(name=b"run/d", data=data, flags=0x08, payload=payload, **options)  # type: ignore[arg-type]


def test_an_honest_data_descriptor_passes() -> None:
    assert isinstance(inspect(build([_described(b"abc" * 50)])), Accepted)


def test_a_data_descriptor_that_lies_is_refused() -> None:
    data = b"abc" * 50
    lie = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(data), 3, len(data))
    assert refused(build([_described(data, descriptor=lie)])).rule == "data descriptor"


def test_a_data_descriptor_without_its_signature_is_refused() -> None:
    data = b"abc" * 50
    spec = _described(data)
    bare = spec.descriptor[4:] if spec.descriptor else b""
    assert refused(build([_described(data, descriptor=bare)])).rule == "data descriptor"


def test_a_stored_member_with_a_data_descriptor_is_refused() -> None:
    spec = Spec(
        name=b"run/s",
        data=b"abc",
        method=0,
        flags=0x08,
        descriptor=struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(b"abc"), 3, 3),
    )
    assert refused(build([spec])).rule == "data descriptor"


# ---- methods, flags, extra fields, zip64 ------------------------------------------------------


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_compression_other_than_stored_or_deflate_is_refused(method: int) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as written:
        written.writestr("run/x", b"abc")
    verdict = refused(buffer.getvalue())
    assert verdict.rule == "compression method"
    assert str(method) in verdict.reason


@pytest.mark.parametrize("flags", [0x0001, 0x0041, 0x2000])
def test_an_encrypted_member_is_refused(flags: int) -> None:
    assert refused(one(b"run/x", flags=flags)).rule == "encryption"


def test_unknown_flag_bits_are_refused() -> None:
    assert refused(one(b"run/x", flags=0x0010)).rule == "flags"


def test_a_unicode_path_extra_field_is_refused() -> None:
    # Info-ZIP's Unicode Path field: some readers take the member's name from here
    unicode_path = extra(0x7075, b"\x01" + struct.pack("<I", zlib.crc32(b"run/x")) + b"../../x")
    verdict = refused(one(b"run/x", central_extra=unicode_path))
    assert verdict.rule == "extra field"
    assert "0x7075" in verdict.reason


def test_a_malformed_or_repeated_extra_field_is_refused() -> None:
    assert refused(one(b"run/x", local_extra=b"\x55\x54\x09\x00abc")).rule == "extra field"
    twice = extra(0x5455, b"\x01abcd") * 2
    assert refused(one(b"run/x", local_extra=twice)).rule == "extra field"


def test_a_zip64_field_that_claims_a_huge_size_is_refused() -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = packer.compress(b"abc") + packer.flush()
    zip64 = extra(0x0001, struct.pack("<QQ", 5 * 2**30, len(payload)))
    verdict = refused(
        one(b"run/x", data=b"abc", payload=payload, size=ZIP64, compressed=ZIP64, local_extra=zip64)
    )
    assert verdict.rule == "size"


def test_a_zip64_field_that_disagrees_with_the_central_directory_is_refused() -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = packer.compress(b"abc") + packer.flush()
    local = extra(0x0001, struct.pack("<QQ", 3, len(payload)))
    central = extra(0x0001, struct.pack("<Q", 3000))
    spec = Spec(
        name=b"run/x",
        data=b"abc",
        payload=payload,
        size=ZIP64,
        compressed=ZIP64,
        central_size=ZIP64,
        central_compressed=len(payload),
        local_extra=local,
        central_extra=central,
    )
    verdict = refused(build([spec]))
    assert verdict.rule == "central directory"


def test_zip64_marks_without_a_zip64_field_and_fields_nobody_points_to_are_refused() -> None:
    assert refused(one(b"run/x", size=ZIP64)).rule == "zip64"
    stray = extra(0x0001, struct.pack("<QQ", 1, 1))
    assert refused(one(b"run/x", local_extra=stray)).rule == "zip64"
    assert refused(one(b"run/x", central_extra=extra(0x0001, b"\0" * 8))).rule == "zip64"


def _zip64_end(specs: list[Spec], **lies: int) -> bytes:
    """The archive of `specs` with a zip64 end record and locator before its end record; `lies`
    replace the record's `entries`, `size`, `offset`, `rest` (its size field) or the locator's
    `points_at`."""
    plain = build(specs)
    end = plain.rindex(b"PK\x05\x06")
    _, _, _, count, _, size, offset, _ = struct.unpack_from("<4sHHHHIIH", plain, end)
    entries = lies.get("entries", count)
    record = struct.pack(
        "<4sQHHIIQQQQ",
        b"PK\x06\x06",
        lies.get("rest", 44),
        45,
        45,
        0,
        0,
        entries,
        entries,
        lies.get("size", size),
        lies.get("offset", offset),
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, lies.get("points_at", end), 1)
    return build(specs, Layout(before_end=record + locator))


def test_an_honest_zip64_end_record_passes() -> None:
    specs = [Spec(name=b"run/a"), Spec(name=b"run/b", data=b"yy")]
    verdict = inspect(_zip64_end(specs))
    assert isinstance(verdict, Accepted)
    assert [m.name for m in verdict.members] == ["run/a", "run/b"]


@pytest.mark.parametrize(
    "lie", [{"entries": 3}, {"size": 10}, {"offset": 0}, {"rest": 60}, {"points_at": 0}]
)
def test_a_zip64_end_record_that_disagrees_with_the_directory_is_refused(
    lie: dict[str, int],
) -> None:
    specs = [Spec(name=b"run/a"), Spec(name=b"run/b", data=b"yy")]
    assert refused(_zip64_end(specs, **lie)).rule == "zip64"


def test_a_zip64_record_or_locator_alone_is_refused() -> None:
    whole = _zip64_end([Spec(name=b"run/a")])
    record_at = whole.index(b"PK\x06\x06")
    locator_at = whole.index(b"PK\x06\x07")
    without_locator = whole[:locator_at] + whole[locator_at + 20 :]
    without_record = whole[:record_at] + whole[locator_at:]
    for data in (without_locator, without_record):
        assert isinstance(inspect(data), Refused)


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP's zip")
def test_what_info_zip_writes_passes_with_and_without_zip64(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "apldbio" / "sds"
    folder.mkdir(parents=True)
    (folder / "experiment.xml").write_bytes(b"<experiment/>" * 100)
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 100)
    for flags in (["-qr"], ["-qr", "-fz"]):
        target = tmp_path / f"out{len(flags)}.zip"
        subprocess.run(["zip", *flags, str(target), "run"], cwd=tmp_path, check=True)
        data = target.read_bytes()
        verdict = inspect(data)
        assert isinstance(verdict, Accepted), (flags, verdict)
        names = [info.filename for info in zipfile.ZipFile(io.BytesIO(data)).infolist()]
        assert [m.name for m in verdict.members] == names


# ---- the body: base64 -------------------------------------------------------------------------


def test_the_body_must_be_strict_base64() -> None:
    good = base64.encodebytes(python_zip({"run/a": b"x" * 200})).decode()
    assert good.count("\n") >= 2
    for text in ("\n" + good, "\n" + good + "\n", good.replace("\n", "\r\n")):
        assert isinstance(archive.inspect_base64(text, member_rule=member_problem), Accepted)
    bad = [
        good + "!",
        good.replace("\n", "\v"),
        good.replace("\n", " "),
        "\u00e9" + good,
        good[:-3],
        "QUJD=QUJD",
        good[:6] + "\n" + good[6:],  # a line that is not whole groups of four
    ]
    for text in bad:
        verdict = archive.inspect_base64(text, member_rule=member_problem)
        assert isinstance(verdict, Refused), text[:20]
        assert verdict.rule == "base64"


# ---- through the judge ------------------------------------------------------------------------


def test_the_judge_refuses_a_traversing_member_below_full_and_names_it() -> None:
    data = python_zip({"apldbio/sds/experiment.xml": b"<x/>", "../../../data/init.rc": b"owned"})
    command = parse_command(zipwrite(data))
    decision = check(command, CONTROLLER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL
    assert decision.command == "EXP:ZIPWRITE"
    assert "archive member '../../../data/init.rc' has a '..' segment" in decision.reason
    assert check(command, FULL, LABGATE) == Allowed(required=FULL)


@pytest.mark.parametrize(
    "text",
    [
        "7 EXP:ZIPWRITE run/",
        "7 EXP:ZIPWRITE run/ UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==",
        "7 EXP:ZIPWRITE run/ other/ <message>\nUEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\n</message>",
        "7 EXP:ZIPWRITE <message>\nUEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\n</message>",
        "7 RET $(EXP:ZIPWRITE run/)",
        "7 FILE:ZIPWRITE experiments:run/ <message>\nUEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\n</message>",
        "7 EXP:ZIPWRITE run/ <message>\nnot base64!\n</message>",
    ],
)
def test_an_upload_the_judge_cannot_read_as_one_archive_needs_full(text: str) -> None:
    decision = check(parse_command(text.encode()), CONTROLLER, LABGATE)
    assert isinstance(decision, Denied)
    assert decision.required is FULL


# ---- every reader sees what the checker saw ------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_a_mutated_archive_is_refused_or_reads_alike_to_zipfile(
    flips: list[tuple[int, int]],
) -> None:
    original = bytearray(python_zip({"run/a.xml": b"<a/>" * 40, "run/b/c.txt": b"hello"}))
    for position, value in flips:
        original[position % len(original)] = value
    data = bytes(original)
    verdict = inspect(data)
    if isinstance(verdict, Refused):
        return
    with zipfile.ZipFile(io.BytesIO(data)) as read:
        infos = read.infolist()
        assert [(m.name, m.size) for m in verdict.members] == [
            (info.filename, info.file_size) for info in infos
        ]
        for info in infos:
            assert len(read.read(info)) == info.file_size  # and its CRC checks


def test_a_member_needing_a_zip_version_past_what_readers_share_is_refused() -> None:
    # Python's zipfile refuses past 6.3 and other readers go on: they would see different archives
    data = bytearray(one(b"run/x"))
    struct.pack_into("<H", data, 4, 64)
    assert refused(bytes(data)).rule == "version"
    data = bytearray(one(b"run/x"))
    struct.pack_into("<H", data, data.index(b"PK\x01\x02") + 6, 64)
    assert refused(bytes(data)).rule == "version"
