"""The demo's signed release: a repository with its keys, served by the demo's control server,
a device set up to trust it, and one install of it sent to the device as an `install_release` job.

The keys are made as `labgate release init` makes them (2-of-3 root, targets, online), encrypted
under one random passphrase kept 0600 in the state directory: a demo has no key holders. The
server gets the repository and the online key through its `LABGATE_RELEASES_*` settings.
"""

from __future__ import annotations

import secrets
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from labgate.agent.installation import ReleaseConfig, install_root
from labgate.demo.enrolment import CALL_TIMEOUT_S, EnrolmentFailed, _login, _said
from labgate.pki.atomic import PRIVATE, write_atomic
from labgate.releases import keyfiles
from labgate.releases.repository import Repository
from labgate.releases.verification import Binding

VERSION = "1.0.0"
ARTIFACT = f"demo-firmware-{VERSION}.bin"
# How long the demo waits for its device to report the install job finished.
JOB_TIMEOUT_S = 90.0
_OVER = {"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED"}


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoRelease:
    repository: Repository
    binding: Binding
    online_key: Path
    passphrase_file: Path

    def server_env(self) -> dict[str, str]:
        return {
            "LABGATE_RELEASES_DIR": str(self.repository.directory),
            "LABGATE_RELEASES_ONLINE_KEY": str(self.online_key),
            "LABGATE_RELEASES_ONLINE_PASSPHRASE_FILE": str(self.passphrase_file),
        }


def prepare(state_dir: Path, model: str) -> DemoRelease:
    """The repository in STATE/releases, made on the first run and signed release 1.0.0 for
    `model`; a later run finds both and reuses them."""
    base = state_dir / "releases"
    keys = base / "keys"
    passphrase_file = base / "passphrase"
    repo_dir = base / "repo"
    if not (repo_dir / "metadata" / "root.json").exists():
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        passphrase = secrets.token_urlsafe(24).encode()
        write_atomic(passphrase_file, passphrase, mode=PRIVATE)
        root = [keyfiles.generate() for _ in range(3)]
        targets, online = keyfiles.generate(), keyfiles.generate()
        for index, signer in enumerate(root, start=1):
            keyfiles.write_key(keys / f"root-{index}.key", signer, passphrase)
        keyfiles.write_key(keys / "targets.key", targets, passphrase)
        keyfiles.write_key(keys / "online.key", online, passphrase)
        now = datetime.now(UTC)
        repository = Repository.create(
            repo_dir,
            root_signers=root,
            root_threshold=2,
            targets_signer=targets,
            online_signer=online,
            now=now,
        )
        artifact = base / ARTIFACT
        artifact.write_bytes(b"labgate demo firmware " + VERSION.encode() + b"\n" * 4096)
        repository.add(
            version=VERSION, compatible=[model], artifacts=[artifact], signers=[targets], now=now
        )
        repository.refresh_online(online, now=now)
    repository = Repository.open(repo_dir)
    target = repository.latest_targets().signed.targets[ARTIFACT]
    binding = Binding(target_path=target.path, length=target.length, sha256=target.hashes["sha256"])
    return DemoRelease(
        repository=repository,
        binding=binding,
        online_key=keys / "online.key",
        passphrase_file=passphrase_file,
    )


def provision(device_dir: Path, release: DemoRelease, model: str) -> None:
    """What `labgate agent releases --root ... --model ...` does for the demo's device."""
    install_root(device_dir, (release.repository.metadata / "1.root.json").read_bytes())
    ReleaseConfig(model=model).save(device_dir)


def install_by_job(
    *, url: str, server_ca: Path, admin_password: Path, device_id: str, release: DemoRelease
) -> dict[str, Any]:
    """Create the `install_release` job as the administrator and wait for the device's verdict;
    returns the job as the server shows it."""
    context = ssl.create_default_context(cafile=str(server_ca))
    binding = release.binding
    params = {
        "target_path": binding.target_path,
        "length": binding.length,
        "sha256": binding.sha256,
    }
    with httpx.Client(base_url=url, verify=context, timeout=CALL_TIMEOUT_S) as client:
        token = _login(client, admin_password.read_text().strip())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        made = client.post(
            "/api/v1/jobs",
            json={"type": "install_release", "params": params, "device_id": device_id},
            headers=headers,
        )
        if made.status_code != 201:
            raise EnrolmentFailed(f"creating the install_release job: {_said(made)}")
        job: dict[str, Any] = made.json()[0]
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while job["state"] not in _OVER and time.monotonic() < deadline:
            time.sleep(0.5)
            answer = client.get(f"/api/v1/jobs/{job['id']}", headers=headers)
            if answer.status_code != 200:
                raise EnrolmentFailed(f"reading job {job['id']}: {_said(answer)}")
            job = answer.json()
        return job
