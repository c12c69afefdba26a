"""Zip uploads (EXP:ZIPWRITE) through the real gateway in front of the simulator: archives that
would unpack outside the run folder or explode are refused, as the simulator's own log shows,
and the real qslib client's run upload still goes through."""

from __future__ import annotations

import base64
import io
import re
import struct
import zipfile
import zlib
from typing import Any

import pytest
from qslib import Experiment, Protocol, Stage, Step


def _zip(members: dict[str, bytes], *, mode: int = 0o100644) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _set_sizes(data: bytes, size: int, *, local: bool = True, central: bool = True) -> bytes:
    """Rewrite the one member's uncompressed size in its local header and/or central entry."""
    out = bytearray(data)
    if local:
        struct.pack_into("<I", out, 22, size)
    if central:
        struct.pack_into("<I", out, out.index(b"PK\x01\x02") + 24, size)
    return bytes(out)


def _hide_second(data: bytes) -> bytes:
    """Drop the second member's central entry: its local header and data stay in the archive."""
    out = bytearray(data)
    first = out.index(b"PK\x01\x02")
    second = out.index(b"PK\x01\x02", first + 4)
    end = out.index(b"PK\x05\x06")
    removed = end - second
    del out[second:end]
    end -= removed
    count, size = struct.unpack_from("<HI", out, end + 10)
    struct.pack_into("<HHI", out, end + 8, count - 1, count - 1, size - removed)
    return bytes(out)


BOMB = bytes(64 * 1024 * 1024)
ATTACKS = {
    "traversal": _zip({"run/ok.xml": b"<x/>", "../../../files/protocols/evil": b"owned"}),
    "absolute": _zip({"/etc/profile.d/evil.sh": b"id"}),
    "backslash": _zip({"..\\..\\evil": b"owned"}),
    "drive letter": _zip({"C:/evil": b"owned"}),
    "symlink": _zip({"run/link": b"/etc"}, mode=0o120777),
    "hidden member": _hide_second(_zip({"run/ok.xml": b"<x/>", "../../hidden": b"owned"})),
    "bomb declaring a small size": _set_sizes(_zip({"run/bomb": BOMB}), 1000),
    "bomb lying in its central directory": _set_sizes(_zip({"run/bomb": BOMB}), 1000, local=False),
}
_UPLOAD = "{ident} EXP:ZIPWRITE attack_run/ <message>\n{body}</message>"


def _controller(raw_client: Any, gateway: Any, pki: Any) -> Any:
    client = raw_client(gateway, pki, "alice")
    assert client.line().startswith(b"READy")
    assert client.ask("1 ACC -exclusive=false Controller") == b"OK 1"
    return client


def _uploads_since(simulator: Any, mark: int) -> list[dict[str, Any]]:
    return [e for e in simulator.received()[mark:] if e.get("command") == "EXP:ZIPWRITE"]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_archive_never_reaches_the_instrument(
    gateway_process: Any, pki: Any, simulator: Any, raw_client: Any, attack: str
) -> None:
    client = _controller(raw_client, gateway_process, pki)
    mark = len(simulator.received())
    body = base64.encodebytes(ATTACKS[attack]).decode()
    reply = client.ask(_UPLOAD.format(ident=5, body=body))
    assert reply.startswith(b"ERRor 5 [InsufficientAccess]"), reply[:200]
    assert b"archive" in reply and b"Full" in reply, reply
    assert client.ask("6 ACC?").startswith(b"OK 6")  # the session goes on
    assert _uploads_since(simulator, mark) == []
    assert not (simulator.state_dir / "files" / "experiments" / "attack_run").exists()


def test_the_refusal_names_the_member_and_the_rule(
    gateway_process: Any, pki: Any, simulator: Any, raw_client: Any
) -> None:
    client = _controller(raw_client, gateway_process, pki)
    body = base64.encodebytes(ATTACKS["traversal"]).decode()
    reply = client.ask(_UPLOAD.format(ident=5, body=body)).decode()
    assert "member '../../../files/protocols/evil'" in reply
    assert re.search(r"has a '\.\.' segment", reply), reply
    body = base64.encodebytes(ATTACKS["bomb lying in its central directory"]).decode()
    reply = client.ask(_UPLOAD.format(ident=7, body=body)).decode()
    assert "run/bomb" in reply and "central directory" in reply, reply


def test_a_hostile_archive_nested_in_a_substitution_never_arrives(
    gateway_process: Any, pki: Any, simulator: Any, raw_client: Any
) -> None:
    client = _controller(raw_client, gateway_process, pki)
    mark = len(simulator.received())
    reply = client.ask("5 RET $(EXP:ZIPWRITE attack_run/)")
    assert reply.startswith(b"ERRor 5 [InsufficientAccess]"), reply
    assert _uploads_since(simulator, mark) == []
    assert not [e for e in simulator.received()[mark:] if "ZIPWRITE" in str(e.get("raw", ""))]


def test_an_archive_holding_an_archive_is_uploaded_as_data(
    gateway_process: Any, pki: Any, simulator: Any, raw_client: Any
) -> None:
    client = _controller(raw_client, gateway_process, pki)
    inner = _zip({"../../etc/passwd": b"root::0:0"})
    body = base64.encodebytes(_zip({"apldbio/sds/inner.zip": inner})).decode()
    mark = len(simulator.received())
    reply = client.ask("5 EXP:ZIPWRITE nested_run/ <message>\n" + body + "</message>")
    assert reply == b"OK 5", reply
    assert len(_uploads_since(simulator, mark)) == 1
    unpacked = simulator.state_dir / "files" / "experiments" / "nested_run" / "apldbio" / "sds"
    assert (unpacked / "inner.zip").read_bytes() == inner
    assert client.ask("6 EXP:DELETE nested_run") == b"OK 6"


def test_qslibs_run_upload_passes_the_gateway(
    gateway_process: Any, pki: Any, simulator: Any, machine: Any
) -> None:
    m = machine(gateway_process, pki, "alice")
    protocol = Protocol([Stage([Step(30, 95.0)]), Stage([Step(20, 60.0)], repeat=10)])
    mark = len(simulator.received())
    Experiment(name="archive run", protocol=protocol).run(m)
    try:
        uploads = _uploads_since(simulator, mark)
        assert len(uploads) == 1 and uploads[0]["body"]["size"] > 1000
        folder = simulator.state_dir / "files" / "experiments" / "archive_run" / "apldbio" / "sds"
        assert (folder / "experiment.xml").is_file()
    finally:
        with m.at_access("Controller"):
            m.abort_current_run()


def test_the_bomb_is_really_a_bomb() -> None:
    # what the gateway refused above does inflate to 64 MiB, past the 1000 bytes it declares
    packed = ATTACKS["bomb declaring a small size"]
    assert len(packed) < 200 * 1024
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    start = 30 + len("run/bomb")
    assert len(inflater.decompress(packed[start:], 2000)) == 2000
