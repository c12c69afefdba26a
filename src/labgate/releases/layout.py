"""Where a repository keeps what, and the names a client may ask for.

    REPO/metadata/N.root.json      every root version, kept forever (clients walk them in order)
    REPO/metadata/root.json        a copy of the newest root (for provisioning devices)
    REPO/metadata/N.targets.json   targets, signed offline
    REPO/metadata/N.snapshot.json  snapshot, signed online
    REPO/metadata/timestamp.json   timestamp, signed online, replaced last
    REPO/targets/SHA256.NAME       artifacts, named by their hash (consistent snapshots)
    REPO/.lock                     serialises writers (the CLI and every server replica)

With consistent snapshots every file but timestamp.json is written once under a new name, and
timestamp.json is replaced last: a client reading while a writer works sees the old release or
the new one, never a mixture.
"""

from __future__ import annotations

import re
from pathlib import Path

METADATA = "metadata"
TARGETS = "targets"
LOCK = ".lock"

ROOT = "root"
TARGETS_ROLE = "targets"
SNAPSHOT = "snapshot"
TIMESTAMP = "timestamp"

# What a client may fetch: a versioned root, targets or snapshot, the plain timestamp and root.
METADATA_NAME = re.compile(r"(?:[1-9][0-9]{0,9}\.(?:root|targets|snapshot)|timestamp|root)\.json")
# Target names: one path segment of plain characters, so a name can never climb out of targets/.
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
HASHED_TARGET_NAME = re.compile(r"[0-9a-f]{64}\.[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def metadata_dir(repo: Path) -> Path:
    return repo / METADATA


def targets_dir(repo: Path) -> Path:
    return repo / TARGETS


def versioned(role: str, version: int) -> str:
    return f"{version}.{role}.json"


def hashed_target(name: str, sha256: str) -> str:
    return f"{sha256}.{name}"


def servable(repo: Path, kind: str, name: str) -> Path | None:
    """The file behind `/tuf/KIND/NAME`, or None when the name is not one a client may ask for
    (checked by pattern before any file system access, so no name reaches outside the repo)."""
    if kind == METADATA and METADATA_NAME.fullmatch(name):
        return metadata_dir(repo) / name
    if kind == TARGETS and HASHED_TARGET_NAME.fullmatch(name):
        return targets_dir(repo) / name
    return None
