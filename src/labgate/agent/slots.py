"""Two install slots (A/B) in the agent's data directory, with commit, roll-back and a floor.

    DIR/releases/slots/a/, DIR/releases/slots/b/   the slots (an install writes the inactive one)
    DIR/releases/slots.json                        which slot runs, which is known good, the
                                                   version floor, and a trial in progress

Every change of slots.json is one atomic rename, so a crash leaves the old state or the new.
The sequence, as RAUC and Mender run it on real hardware:
1. install into the inactive slot (the pluggable install command); the running slot is untouched;
2. activate: the new slot becomes the running one *on trial* (`trial` is persisted first, so a
   reboot in the middle is recognised);
3. health check in the new slot; pass: commit (the slot becomes the good one, the floor rises
   to its version); fail: roll back (the good slot runs again).
`boot()` is what a restarted device calls first: a slot still on trial is checked again, and a
failed check (or a check that crashed the device too often) returns to the good slot by itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from labgate.agent.errors import CorruptState, ReasonedError
from labgate.pki.atomic import PUBLIC, write_atomic
from labgate.releases.versions import Version

SLOTS = ("a", "b")
STATE = "slots.json"
RELEASE = "release.json"
# A trial slot that was booted this many times without a verdict is given up (RAUC's default).
MAX_TRIAL_BOOTS = 3
COMMAND_SECONDS = 300


class SlotError(ReasonedError):
    """An install command, a health check or the slot state that did not do its part."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotState:
    active: str = "a"
    good: str = "a"
    floor: str | None = None
    version: str | None = None  # the good slot's release
    trial: str | None = None
    trial_version: str | None = None
    trial_boots: int = 0

    @property
    def inactive(self) -> str:
        return SLOTS[1 - SLOTS.index(self.active)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    healthy: bool
    reason: str = ""


class Installer(Protocol):
    def __call__(self, artifact: Path, slot: Path, *, name: str) -> None: ...


class HealthCheck(Protocol):
    def __call__(self, slot: Path, release: Mapping[str, Any]) -> Health: ...


def move_installer(artifact: Path, slot: Path, *, name: str) -> None:
    """The default install: the artifact, verified already, renamed into the slot (it is the
    agent's own download; one file system, so no second copy of a large image)."""
    os.replace(artifact, slot / name)


def release_present(slot: Path, release: Mapping[str, Any]) -> Health:
    """The default health check: the slot holds its release's artifact at its length."""
    artifact = slot / str(release.get("target", ""))
    if not artifact.is_file():
        return Health(healthy=False, reason=f"{artifact.name} is missing from slot {slot.name}")
    if artifact.stat().st_size != release.get("length"):
        return Health(healthy=False, reason=f"{artifact.name} has the wrong length")
    return Health(healthy=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandInstaller:
    """A configured install command: argv with `{ARTIFACT}` and `{SLOT}` replaced (no shell)."""

    argv: Sequence[str]

    def __call__(self, artifact: Path, slot: Path, *, name: str) -> None:
        argv = [
            part.replace("{ARTIFACT}", str(artifact)).replace("{SLOT}", str(slot))
            for part in self.argv
        ]
        result = _run(argv, slot, {"LABGATE_TARGET": name})
        if result.returncode != 0:
            raise SlotError(
                "install_failed", f"install command exited {result.returncode}: {_tail(result)}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandHealthCheck:
    """A configured health check: exit status 0 is healthy; runs in the slot directory."""

    argv: Sequence[str]

    def __call__(self, slot: Path, release: Mapping[str, Any]) -> Health:
        argv = [part.replace("{SLOT}", str(slot)) for part in self.argv]
        result = _run(argv, slot, {"LABGATE_RELEASE_VERSION": str(release.get("version", ""))})
        if result.returncode == 0:
            return Health(healthy=True)
        return Health(
            healthy=False, reason=f"health check exited {result.returncode}: {_tail(result)}"
        )


class Slots:
    def __init__(
        self,
        directory: Path,
        *,
        installer: Installer = move_installer,
        health: HealthCheck = release_present,
    ) -> None:
        self.directory = directory
        self.installer = installer
        self.health = health

    def slot_dir(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise ValueError(f"slot {slot!r} is not one of {SLOTS}")
        return self.directory / "slots" / slot

    def state(self) -> SlotState:
        path = self.directory / STATE
        try:
            data = json.loads(path.read_text())
            state = SlotState(**data)
        except FileNotFoundError:
            return SlotState()
        except (ValueError, TypeError) as error:
            raise CorruptState(f"{path} is not the slot state labgate wrote: {error}") from None
        if {state.active, state.good} - set(SLOTS) or state.trial not in (None, *SLOTS):
            raise CorruptState(f"{path} names a slot that is not a or b")
        return state

    def floor(self) -> Version | None:
        floor = self.state().floor
        return None if floor is None else Version.parse(floor)

    def release_in(self, slot: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.slot_dir(slot) / RELEASE).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data

    def install(
        self, artifact: Path, *, name: str, version: Version, sha256: str, length: int
    ) -> str:
        """Write the release into the inactive slot; returns that slot's name."""
        state = self.state()
        if state.trial is not None:
            raise SlotError("trial_pending", f"slot {state.trial} is still on trial; boot first")
        slot = state.inactive
        target = self.slot_dir(slot)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        self.installer(artifact, target, name=name)
        release = {"target": name, "version": str(version), "sha256": sha256, "length": length}
        write_atomic(target / RELEASE, json.dumps(release, sort_keys=True).encode(), mode=PUBLIC)
        return slot

    def activate(self, slot: str) -> None:
        """Switch to `slot` on trial: the simulated reboot into the new release."""
        release = self.release_in(slot)
        if release is None:
            raise SlotError("not_installed", f"slot {slot} holds no installed release")
        state = self.state()
        self._save(
            replace(state, active=slot, trial=slot, trial_version=release["version"], trial_boots=0)
        )

    def check(self, slot: str) -> Health:
        release = self.release_in(slot)
        if release is None:
            return Health(healthy=False, reason=f"slot {slot} holds no release")
        try:
            return self.health(self.slot_dir(slot), release)
        except (OSError, subprocess.SubprocessError) as error:
            return Health(healthy=False, reason=f"health check could not run: {error}")

    def commit(self) -> SlotState:
        state = self.state()
        if state.trial is None or state.trial_version is None:
            raise SlotError("no_trial", "no slot is on trial; nothing to commit")
        version = Version.parse(state.trial_version)
        floor = None if state.floor is None else Version.parse(state.floor)
        raised = str(version) if floor is None or floor < version else state.floor
        committed = SlotState(
            active=state.trial, good=state.trial, floor=raised, version=state.trial_version
        )
        self._save(committed)
        return committed

    def roll_back(self) -> SlotState:
        state = self.state()
        rolled = replace(state, active=state.good, trial=None, trial_version=None, trial_boots=0)
        self._save(rolled)
        return rolled

    def boot(self) -> str:
        """What a device runs at start: settle a trial left by a reboot. Returns what happened:
        "steady", "committed" or "rolled_back"."""
        state = self.state()
        if state.trial is None:
            return "steady"
        boots = state.trial_boots + 1
        self._save(replace(state, trial_boots=boots))
        if boots > MAX_TRIAL_BOOTS:
            self.roll_back()
            return "rolled_back"
        if self.check(state.trial).healthy:
            self.commit()
            return "committed"
        self.roll_back()
        return "rolled_back"

    def _save(self, state: SlotState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(
            self.directory / STATE, json.dumps(asdict(state), sort_keys=True).encode(), mode=PUBLIC
        )


def _run(
    argv: Sequence[str], cwd: Path, extra: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    if not argv:
        raise SlotError("bad_command", "an empty command was configured")
    env = {**os.environ, "LABGATE_SLOT_DIR": str(cwd), **extra}
    try:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SlotError("command_timeout", f"{argv[0]} ran over {COMMAND_SECONDS} s") from None
    except OSError as error:
        raise SlotError("bad_command", f"{argv[0]}: {error.strerror}") from None


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or result.stdout or "").strip().splitlines()
    return text[-1][:200] if text else "(no output)"
