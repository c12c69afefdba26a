"""The device's side: python-tuf's ngclient, trusting only the device's installed root, and the
check of one target against what an install names (path, length, sha256) and the device's model.

ngclient does TUF's whole client workflow (root chain, freeze, rollback, mix-and-match, length
caps). What it cannot know is labgate's binding: a target that verifies is still refused when
the install names other bytes, or when the release does not list the device's model, or when its
version is below the device's floor (the persisted version of the last committed install).

Offline installs (a bundle on a USB stick) run the same workflow against the bundle's files with
an explicit reference time that the operator states: metadata is judged as of that time, not the
device's clock. python-tuf fixes its reference time when the trusted set is built and has no
parameter for it (an open request upstream); `Client` sets that one attribute right after
building the Updater, before anything is judged, and refuses to run if the attribute is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from labgate.releases.errors import Refused, ReleaseError, VerificationFailed
from labgate.releases.versions import ReleaseInfo, Version

# Metadata caps below python-tuf's defaults: a lab repository is small, and every byte of an
# endless-data attack is a byte of the device's storage.
LIMITS = UpdaterConfig(
    max_root_rotations=32,
    max_delegations=8,
    root_max_length=256 * 1024,
    timestamp_max_length=16 * 1024,
    snapshot_max_length=1024 * 1024,
    targets_max_length=4 * 1024 * 1024,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """What an install names for this device: the exact bytes it must receive."""

    target_path: str
    length: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedTarget:
    info: TargetFile
    release: ReleaseInfo

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def length(self) -> int:
        return self.info.length

    @property
    def sha256(self) -> str:
        return self.info.hashes["sha256"]


class Client:
    def __init__(
        self,
        *,
        cache_dir: Path,
        trusted_root: bytes,
        metadata_url: str,
        fetcher: FetcherInterface,
        reference_time: datetime | None = None,
        config: UpdaterConfig = LIMITS,
    ) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.updater = Updater(
                str(cache_dir), metadata_url, fetcher=fetcher, config=config, bootstrap=trusted_root
            )
        except (tuf_errors.RepositoryError, ValueError) as error:
            raise VerificationFailed(f"the installed root does not load: {error}") from None
        if reference_time is not None:
            trusted = getattr(self.updater, "_trusted_set", None)
            if trusted is None or not hasattr(trusted, "reference_time"):
                raise ReleaseError("this python-tuf cannot judge metadata at a stated time")
            trusted.reference_time = reference_time

    def target_for(self, binding: Binding, *, model: str, floor: Version | None) -> VerifiedTarget:
        """Refresh the metadata and return the target `binding` names, or raise why not."""
        try:
            self.updater.refresh()
            info = self.updater.get_targetinfo(binding.target_path)
        except tuf_errors.DownloadError as error:
            raise VerificationFailed(
                f"fetching release metadata failed: {_describe(error)}"
            ) from None
        except tuf_errors.RepositoryError as error:
            raise VerificationFailed(f"release metadata refused: {_describe(error)}") from None
        if info is None:
            raise Refused(
                "unknown-target", f"no signed release has a target {binding.target_path!r}"
            )
        return check_binding(info, binding, model=model, floor=floor)


def check_binding(
    info: TargetFile, binding: Binding, *, model: str, floor: Version | None
) -> VerifiedTarget:
    if info.length != binding.length or info.hashes.get("sha256") != binding.sha256:
        raise Refused(
            "binding-mismatch",
            f"target {info.path!r} is signed with length {info.length} and sha256 "
            f"{info.hashes.get('sha256', '?')[:16]}..., not the {binding.length} bytes and "
            f"{binding.sha256[:16]}... the install names",
        )
    try:
        release = ReleaseInfo.from_custom(info.custom, path=info.path)
    except ReleaseError as error:
        raise Refused("no-release-info", str(error)) from None
    if model not in release.compatible:
        raise Refused(
            "wrong-model",
            f"release {release.version} ({info.path}) is for {', '.join(release.compatible)},"
            f" not this device's model {model!r}",
        )
    if floor is not None and release.version < floor:
        raise Refused(
            "older-than-floor",
            f"release {release.version} is older than this device's floor {floor} (rollback)",
        )
    return VerifiedTarget(info=info, release=release)


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    cause = error.__cause__
    if cause is not None and str(cause):
        text = f"{text} ({type(cause).__name__}: {cause})"
    return f"{type(error).__name__}: {text}"
