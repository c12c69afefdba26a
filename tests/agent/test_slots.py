"""The A/B slots: install into the inactive one, trial, commit raising the floor, roll-back,
settling a trial at boot, and a state file that is not what labgate wrote."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from labgate.agent.errors import CorruptState
from labgate.agent.slots import MAX_TRIAL_BOOTS, CommandInstaller, Health, SlotError, Slots
from labgate.releases.versions import Version


def _artifact(tmp_path: Path, data: bytes = b"image") -> Path:
    path = tmp_path / "download.part"
    path.write_bytes(data)
    return path


def _install(slots: Slots, tmp_path: Path, version: str, data: bytes = b"image") -> str:
    artifact = _artifact(tmp_path, data)
    return slots.install(
        artifact,
        name="fw.bin",
        version=Version.parse(version),
        sha256=hashlib.sha256(data).hexdigest(),
        length=len(data),
    )


def test_commit_raises_the_floor_and_never_lowers_it(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "releases")
    slot = _install(slots, tmp_path, "2.0")
    assert slot == "b"
    slots.activate(slot)
    assert slots.commit().floor == "2.0"
    # Reinstalling an equal version (allowed) keeps the floor where it was.
    slots.activate(_install(slots, tmp_path, "2"))
    state = slots.commit()
    assert (state.active, state.good, state.floor) == ("a", "a", "2.0")


def test_a_second_install_waits_for_the_trial_to_end(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "releases")
    slots.activate(_install(slots, tmp_path, "1.0"))
    with pytest.raises(SlotError) as caught:
        _install(slots, tmp_path, "1.1")
    assert caught.value.reason == "trial_pending"


def test_boot_commits_a_healthy_trial(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "releases")
    slots.activate(_install(slots, tmp_path, "1.0"))
    assert Slots(tmp_path / "releases").boot() == "committed"
    assert slots.state().good == "b"


def test_a_trial_that_keeps_crashing_the_device_is_given_up(tmp_path: Path) -> None:
    # The health check "hangs the device": boot() never returns a verdict, the counter does.
    def crashes(slot: Path, release: object) -> Health:
        raise SystemExit("the device reset during its health check")

    slots = Slots(tmp_path / "releases", health=crashes)
    slots.activate(_install(slots, tmp_path, "1.0"))
    for _ in range(MAX_TRIAL_BOOTS):
        with pytest.raises(SystemExit):
            Slots(tmp_path / "releases", health=crashes).boot()
    assert Slots(tmp_path / "releases", health=crashes).boot() == "rolled_back"
    state = slots.state()
    assert (state.active, state.trial, state.floor) == ("a", None, None)


def test_failing_install_command_leaves_the_running_slot_alone(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "releases", installer=CommandInstaller(argv=("sh", "-c", "exit 4")))
    with pytest.raises(SlotError, match="install command exited 4") as caught:
        _install(slots, tmp_path, "1.0")
    assert caught.value.reason == "install_failed"
    assert slots.state().active == "a" and slots.state().trial is None


def test_install_command_gets_the_artifact_and_the_slot(tmp_path: Path) -> None:
    command = CommandInstaller(argv=("cp", "{ARTIFACT}", "{SLOT}/copied.bin"))
    slots = Slots(tmp_path / "releases", installer=command)
    slot = _install(slots, tmp_path, "1.0", b"payload")
    assert (slots.slot_dir(slot) / "copied.bin").read_bytes() == b"payload"


def test_state_file_not_written_by_labgate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    (tmp_path / "releases" / "slots.json").write_text('{"active": "c", "good": "a"}')
    with pytest.raises(CorruptState, match="not a or b"):
        Slots(tmp_path / "releases").state()
    (tmp_path / "releases" / "slots.json").write_text("{not json")
    with pytest.raises(CorruptState):
        Slots(tmp_path / "releases").state()
