"""Fetching release metadata and artifacts with caps, a minimum rate and resumption.

Three defences python-tuf's own fetcher leaves to the application:
- a minimum rate: a server that trickles (a slow-retrieval attack, or a dying link) is dropped
  once fewer than `RateFloor.bytes_per_second` arrived over a whole window (1 KiB/s over 60 s);
  the socket's read timeout is the window too, so a server that sends nothing is dropped as well;
- a length cap on every response: metadata by ngclient's per-role caps, an artifact at exactly
  the length its verified target info states (one byte more and the download is thrown away);
- resumption: an artifact goes to `SHA256.part` with the server's ETag beside it, and a later
  attempt asks for the rest with `Range` and `If-Range`. A server whose file changed answers
  with the whole file (200), which replaces the part. The whole file's hash is checked at the
  end in any case, so a swapped tail is caught even from a server that lies about its ETag.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface

from labgate.agent.errors import ReasonedError
from labgate.pki.atomic import PRIVATE, write_atomic
from labgate.releases import layout

# Bytes asked of the socket at a time: small enough that a trickle is measured as it comes.
CHUNK = 64 * 1024
CONNECT_SECONDS = 10.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
BUNDLE_SCHEME = "bundle"


class DownloadFailed(ReasonedError):
    """A download that stopped: too slow, too long, cut off, refused by the server."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RateFloor:
    bytes_per_second: int = 1024
    window_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.bytes_per_second < 1 or not 0 < self.window_seconds <= 3600:
            raise ValueError("a rate floor is >= 1 B/s over a window of (0, 3600] seconds")


class RateWatch:
    """Counts bytes in consecutive windows; below the floor over a whole window is too slow."""

    def __init__(self, floor: RateFloor, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.floor = floor
        self.clock = clock
        self.mark = clock()
        self.since_mark = 0

    def received(self, count: int, *, what: str) -> None:
        self.since_mark += count
        now = self.clock()
        elapsed = now - self.mark
        if elapsed < self.floor.window_seconds:
            return
        if self.since_mark < self.floor.bytes_per_second * elapsed:
            raise DownloadFailed(
                "too_slow",
                f"{what}: {self.since_mark} bytes in {elapsed:.1f} s, below the floor of "
                f"{self.floor.bytes_per_second} B/s",
            )
        self.mark = now
        self.since_mark = 0


@dataclass(slots=True)
class Tally:
    """Bytes received, for the report and for tests that hold resumption to its promise."""

    received: int = 0


def pool_for(context: ssl.SSLContext | None, floor: RateFloor) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        ssl_context=context,
        retries=False,
        timeout=urllib3.Timeout(connect=CONNECT_SECONDS, read=floor.window_seconds),
    )


class HttpsFetcher(FetcherInterface):
    """ngclient's fetcher: one pool, the rate floor, no retries (the job retries)."""

    def __init__(
        self, pool: urllib3.PoolManager, floor: RateFloor, tally: Tally | None = None
    ) -> None:
        self.pool = pool
        self.floor = floor
        self.tally = tally or Tally()

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = _request(self.pool, url, {})
        if response.status >= 400:
            _done(response, complete=False)
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        return self._chunks(response, url)

    def _chunks(self, response: urllib3.BaseHTTPResponse, url: str) -> Iterator[bytes]:
        watch = RateWatch(self.floor)
        complete = False
        try:
            for chunk in _stream(response, url):
                self.tally.received += len(chunk)
                watch.received(len(chunk), what=url)
                yield chunk
            complete = True
        finally:
            _done(response, complete=complete)


class BundleFetcher(FetcherInterface):
    """ngclient's fetcher over a bundle directory (`labgate release bundle`): `bundle:///K/N`
    is `DIR/K/N`, for the names a server would serve and no others."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = bundle_path(self.directory, url)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise tuf_errors.DownloadHTTPError(f"{url} is not in the bundle", 404) from None
        return _file_chunks(handle)


def bundle_path(directory: Path, url: str) -> Path:
    parts = urlsplit(url)
    kind, _, name = unquote(parts.path).lstrip("/").partition("/")
    path = layout.servable(directory, kind, name) if parts.scheme == BUNDLE_SCHEME else None
    if path is None:
        raise tuf_errors.DownloadHTTPError(f"{url} is not a name a bundle holds", 404)
    return path


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def download_target(
    pool: urllib3.PoolManager,
    url: str,
    partial: Path,
    *,
    length: int,
    floor: RateFloor,
    tally: Tally,
) -> None:
    """Bring `partial` to `length` bytes from `url`, resuming what an earlier attempt left.
    The caller checks the hash; this only promises the length and the rate."""
    etag_file = partial.with_name(partial.name + ".etag")
    have = partial.stat().st_size if partial.exists() else 0
    etag = etag_file.read_text().strip() if etag_file.exists() else None
    if have > length or (have and not etag):
        have = 0
    if have == length:
        return
    headers = {"Range": f"bytes={have}-", "If-Range": etag} if have and etag else {}
    response = _request(pool, url, headers)
    complete = False
    try:
        if response.status == 206 and have:
            _check_content_range(response.headers.get("Content-Range"), have, length, url)
        elif response.status == 200:
            have = 0
        else:
            raise DownloadFailed("http_error", f"{url}: the server answered HTTP {response.status}")
        new_etag = response.headers.get("ETag")
        if new_etag and new_etag != etag:
            write_atomic(etag_file, new_etag.encode("ascii", "replace"), mode=PRIVATE)
        elif not new_etag:
            with contextlib.suppress(FileNotFoundError):
                etag_file.unlink()
        _receive(response, partial, have=have, length=length, floor=floor, tally=tally, url=url)
        complete = True
    finally:
        _done(response, complete=complete)


def discard(partial: Path) -> None:
    for path in (partial, partial.with_name(partial.name + ".etag")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def copy_target(source: Path, partial: Path, *, length: int) -> None:
    """The bundle's artifact into `partial`, refusing one longer than declared."""
    copied = 0
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE)
    with os.fdopen(fd, "wb") as writer, source.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            copied += len(chunk)
            if copied > length:
                writer.close()
                discard(partial)
                raise DownloadFailed(
                    "too_long", f"{source.name} is longer than the {length} bytes it is signed with"
                )
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())


def _receive(
    response: urllib3.BaseHTTPResponse,
    partial: Path,
    *,
    have: int,
    length: int,
    floor: RateFloor,
    tally: Tally,
    url: str,
) -> None:
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
    with os.fdopen(fd, "r+b") as writer:
        writer.truncate(have)
        writer.seek(have)
        watch = RateWatch(floor)
        try:
            for chunk in _stream(response, url):
                tally.received += len(chunk)
                if have + len(chunk) > length:
                    writer.truncate(have)
                    raise DownloadFailed(
                        "too_long", f"{url} sends more than the {length} bytes it is signed with"
                    )
                writer.write(chunk)
                have += len(chunk)
                watch.received(len(chunk), what=url)
        finally:
            writer.flush()
            os.fsync(writer.fileno())
    if have < length:
        raise DownloadFailed(
            "incomplete", f"{url}: the connection ended at {have} of {length} bytes (resumable)"
        )


def _request(
    pool: urllib3.PoolManager, url: str, headers: dict[str, str]
) -> urllib3.BaseHTTPResponse:
    try:
        return pool.request("GET", url, headers=headers, preload_content=False, redirect=False)
    except urllib3.exceptions.TimeoutError as error:
        raise DownloadFailed("too_slow", f"{url}: no answer in time ({error})") from None
    except urllib3.exceptions.HTTPError as error:
        raise DownloadFailed("unreachable", f"{url}: {error}") from None


def _stream(response: urllib3.BaseHTTPResponse, url: str) -> Iterator[bytes]:
    try:
        while chunk := response.read1(CHUNK):
            yield chunk
    except urllib3.exceptions.TimeoutError:
        raise DownloadFailed(
            "too_slow", f"{url}: nothing arrived for a whole rate window"
        ) from None
    except urllib3.exceptions.ProtocolError as error:
        raise DownloadFailed("incomplete", f"{url}: the connection broke ({error})") from None


def _done(response: urllib3.BaseHTTPResponse, *, complete: bool) -> None:
    """Return the connection to the pool only after a response read to its end. Any other (an
    error's body, a download stopped for its length or rate) closes the connection, so no stale
    bytes can meet the next request on it."""
    if not complete:
        response.close()
    response.release_conn()


def _check_content_range(value: str | None, have: int, length: int, url: str) -> None:
    match = _CONTENT_RANGE.fullmatch(value or "")
    if not match or int(match[1]) != have or int(match[3]) != length or int(match[2]) != length - 1:
        raise DownloadFailed(
            "bad_range", f"{url}: asked for bytes {have}- of {length}, got range {value!r}"
        )
