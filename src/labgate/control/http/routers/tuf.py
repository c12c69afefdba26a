"""The release repository, as python-tuf's client fetches it: `/tuf/metadata/N` and
`/tuf/targets/HASH.NAME`, with Range, If-Range and ETag (Starlette's file response), no login:
every byte is signed, and what a device may install is decided by its own checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from labgate.control.errors import NotFound
from labgate.control.releases import ReleaseService

router = APIRouter(tags=["releases"])


class ReleaseFile(FileResponse):
    # Starlette reads 64 KiB per trip to a worker thread; a release image is megabytes, and a
    # larger read cuts the trips (and the CPU per MB served) by 16.
    chunk_size = 1024 * 1024


def get_releases(request: Request) -> ReleaseService:
    service = getattr(request.app.state, "releases", None)
    if not isinstance(service, ReleaseService):
        raise NotFound("this server serves no release repository")
    return service


ReleasesDep = Annotated[ReleaseService, Depends(get_releases)]


@router.get("/tuf/{kind}/{name}", response_class=ReleaseFile)
def tuf_file(kind: str, name: str, releases: ReleasesDep) -> ReleaseFile:
    media = "application/json" if kind == "metadata" else "application/octet-stream"
    return ReleaseFile(releases.file_for(kind, name), media_type=media)
