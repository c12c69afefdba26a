"""One TLS question per connection: "would you speak VERSION with one of these SUITES?"

A ClientHello is built with tlslite-ng's message classes and the server's first flight read with
its parser, up to the ServerHello (and, before TLS 1.3, the certificate, which is still in the
clear), then the connection is closed with an alert. No handshake is finished, so this works for
SSLv3 (which OpenSSL 3 cannot speak at all), for suites OpenSSL no longer offers, and against a
server that wants a client certificate (the gateway), which a full handshake would not get past.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tlslite.constants import (
    AlertDescription,
    CipherSuite,
    ContentType,
    ECPointFormat,
    ExtensionType,
    GroupName,
    HandshakeType,
    SignatureScheme,
)
from tlslite.extensions import (
    ClientKeyShareExtension,
    ECPointFormatsExtension,
    KeyShareEntry,
    SignatureAlgorithmsExtension,
    SNIExtension,
    SupportedGroupsExtension,
    SupportedVersionsExtension,
)
from tlslite.messages import ClientHello, ServerHello
from tlslite.utils.codec import Parser

# Bytes of a first flight read at most: a certificate chain of a few certificates fits easily.
MAX_FLIGHT = 64 * 1024
RECORD_HEADER = 5


class Version(StrEnum):
    SSL3 = "SSLv3"
    TLS10 = "TLSv1.0"
    TLS11 = "TLSv1.1"
    TLS12 = "TLSv1.2"
    TLS13 = "TLSv1.3"

    @property
    def wire(self) -> tuple[int, int]:
        return _WIRE[self]


_WIRE = {
    Version.SSL3: (3, 0),
    Version.TLS10: (3, 1),
    Version.TLS11: (3, 2),
    Version.TLS12: (3, 3),
    Version.TLS13: (3, 4),
}
ALL_VERSIONS = tuple(Version)

TLS13_SUITES = tuple(CipherSuite.tls13Suites)
# Every pre-1.3 suite tlslite-ng can name (and so grade), without the signalling ones and the
# three-byte SSLv2 codes.
_SIGNALLING = {CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV, CipherSuite.TLS_FALLBACK_SCSV}
LEGACY_SUITES = tuple(
    sorted(
        suite
        for suite in CipherSuite.ietfNames
        if suite <= 0xFFFF and suite not in TLS13_SUITES and suite not in _SIGNALLING
    )
)
_GROUPS = [
    GroupName.x25519,
    GroupName.secp256r1,
    GroupName.secp384r1,
    GroupName.secp521r1,
    GroupName.ffdhe2048,
    GroupName.ffdhe3072,
]
_SCHEMES = [
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pkcs1_sha256,
    SignatureScheme.rsa_pkcs1_sha384,
    SignatureScheme.ed25519,
    SignatureScheme.rsa_pkcs1_sha1,
    SignatureScheme.ecdsa_sha1,
]


def suite_name(suite: int) -> str:
    return str(CipherSuite.ietfNames.get(suite, f"0x{suite:04X}"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """The server chose `suite` for `version`; `certificates` (DER, leaf first) when sent clear."""

    version: Version
    suite: int
    certificates: tuple[bytes, ...] = ()
    # Whether the first flight asked for a client certificate (None: not visible, TLS 1.3).
    wants_client_certificate: bool | None = None

    @property
    def suite_name(self) -> str:
        return suite_name(self.suite)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """The server would not: an alert, another version than asked, or it hung up."""

    reason: str


HelloAnswer = Accepted | Refused


def client_hello(version: Version, suites: Sequence[int], server_name: str | None) -> bytes:
    """The record carrying a ClientHello for exactly `version` and `suites`."""
    extensions: list[object] = []
    if version is not Version.SSL3:
        if server_name:
            extensions.append(SNIExtension().create(bytearray(server_name, "ascii")))
        extensions.append(SupportedGroupsExtension().create(_GROUPS))
        extensions.append(ECPointFormatsExtension().create([ECPointFormat.uncompressed]))
    if version in (Version.TLS12, Version.TLS13):
        extensions.append(SignatureAlgorithmsExtension().create(_SCHEMES))
    if version is Version.TLS13:
        share = (
            X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        extensions.append(SupportedVersionsExtension().create([(3, 4)]))
        extensions.append(
            ClientKeyShareExtension().create(
                [KeyShareEntry().create(GroupName.x25519, bytearray(share))]
            )
        )
    offered = [*list(suites), CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV]
    hello = ClientHello().create(
        (3, 3) if version is Version.TLS13 else version.wire,
        bytearray(os.urandom(32)),
        # TLS 1.3 middlebox compatibility: a legacy session id, as every browser sends.
        bytearray(os.urandom(32)) if version is Version.TLS13 else bytearray(0),
        offered,
        extensions=extensions or None,
    )
    body = bytes(hello.write())
    record_version = (3, 0) if version is Version.SSL3 else (3, 1)
    return struct.pack("!BBBH", ContentType.handshake, *record_version, len(body)) + body


def ask(
    sock: socket.socket, version: Version, suites: Sequence[int], server_name: str | None = None
) -> HelloAnswer:
    """Send one ClientHello on `sock` and read the answer. Raises TimeoutError when the server
    says nothing at all within the socket's timeout (the caller decides what that means)."""
    sock.sendall(client_hello(version, suites, server_name))
    reader = _Flight(sock)
    try:
        return _read_answer(reader, version)
    finally:
        _say_goodbye(sock, version)


class _Flight:
    """The server's handshake messages, reassembled from its records."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._handshake = bytearray()
        self._read = 0

    def _exactly(self, size: int) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        self._read += size
        return bytes(data)

    def next_message(self) -> tuple[str, int, bytes] | None:
        """("handshake", type, body) or ("alert", description, b"") or None at end of stream."""
        while True:
            if len(self._handshake) >= 4:
                kind = self._handshake[0]
                length = int.from_bytes(self._handshake[1:4], "big")
                if len(self._handshake) >= 4 + length:
                    body = bytes(self._handshake[4 : 4 + length])
                    del self._handshake[: 4 + length]
                    return "handshake", kind, body
            if self._read > MAX_FLIGHT:
                return None
            header = self._exactly(RECORD_HEADER)
            if header is None:
                return None
            content, _major, _minor, length = struct.unpack("!BBBH", header)
            payload = self._exactly(length)
            if payload is None:
                return None
            if content == ContentType.alert:
                description = payload[1] if len(payload) >= 2 else -1
                return "alert", description, b""
            if content == ContentType.handshake:
                self._handshake += payload
            elif content == ContentType.change_cipher_spec:
                continue
            else:  # application data or encrypted records: nothing more in the clear
                return None


def _read_answer(reader: _Flight, version: Version) -> HelloAnswer:
    try:
        first = reader.next_message()
    except ConnectionResetError:
        return Refused(reason="the server reset the connection")
    if first is None:
        return Refused(reason="the server closed the connection")
    kind, code, body = first
    if kind == "alert":
        return Refused(reason=f"alert {AlertDescription.toStr(code)}")
    if code != HandshakeType.server_hello:
        return Refused(reason=f"handshake message {code} instead of a ServerHello")
    hello = ServerHello().parse(Parser(bytearray(_with_header(code, body))))
    chosen = _negotiated(hello)
    if chosen != version.wire:
        shown = {v.wire: v.value for v in Version}.get(chosen, str(chosen))
        return Refused(reason=f"the server answered with {shown}")
    if version is Version.TLS13:
        return Accepted(version=version, suite=hello.cipher_suite)
    certificates, wants = _rest_of_flight(reader)
    return Accepted(
        version=version,
        suite=hello.cipher_suite,
        certificates=certificates,
        wants_client_certificate=wants,
    )


def _negotiated(hello: ServerHello) -> tuple[int, int]:
    """The version the server chose: TLS 1.3's is in its supported_versions extension."""
    for extension in hello.extensions or ():
        picked = getattr(extension, "version", None)
        # tlslite parses the server's form as its own class (SrvSupportedVersionsExtension).
        if extension.extType == ExtensionType.supported_versions and picked is not None:
            return int(picked[0]), int(picked[1])
    return int(hello.server_version[0]), int(hello.server_version[1])


def _rest_of_flight(reader: _Flight) -> tuple[tuple[bytes, ...], bool | None]:
    """The certificate chain after a pre-1.3 ServerHello, and whether the server asks for a
    client certificate, read up to its ServerHelloDone."""
    found: list[bytes] = []
    wants: bool | None = None
    while True:
        try:
            message = reader.next_message()
        except OSError:
            return tuple(found), wants
        if message is None or message[0] != "handshake":
            return tuple(found), wants
        kind, body = message[1], message[2]
        if kind == HandshakeType.certificate:
            found = _chain(body)
        elif kind == HandshakeType.certificate_request:
            wants = True
        elif kind == HandshakeType.server_hello_done:
            return tuple(found), bool(wants)


def _chain(body: bytes) -> list[bytes]:
    found: list[bytes] = []
    at = 3
    total = 3 + int.from_bytes(body[0:3], "big")
    while at + 3 <= min(total, len(body)):
        size = int.from_bytes(body[at : at + 3], "big")
        found.append(body[at + 3 : at + 3 + size])
        at += 3 + size
    return found


def _with_header(kind: int, body: bytes) -> bytes:
    # tlslite's parsers expect the handshake type already read; ServerHello.parse reads the
    # 3-byte length itself.
    return len(body).to_bytes(3, "big") + body


def _say_goodbye(sock: socket.socket, version: Version) -> None:
    """A user_canceled alert (warning level), so the server logs an orderly end."""
    record_version = (3, 0) if version is Version.SSL3 else (3, 1)
    alert = bytes([1, AlertDescription.user_canceled])
    with contextlib.suppress(OSError):
        sock.sendall(struct.pack("!BBBH", ContentType.alert, *record_version, 2) + alert)
