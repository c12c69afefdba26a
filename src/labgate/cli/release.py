"""`labgate release`: make and sign a release repository offline, rotate its root, bundle it.

Key files live in a key directory (`--keys`, default `release-keys`): `root-N.key` for the root
holders, `targets.key` for whoever signs releases, `online.key` for the control server. Each is
an encrypted 0600 file. After `init`, hand each root key to its holder and keep them apart; a
command that needs them reads the ones present.

Passphrases come from a prompt (one per key file), or for scripts from
LABGATE_RELEASE_PASSPHRASE / --passphrase-file (offline keys) and
LABGATE_RELEASE_ONLINE_PASSPHRASE / --online-passphrase-file (the online key); never from an
argument, which would show in `ps` and the shell's history.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labgate.cli.group import Group

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

# Names of environment variables, not secrets.
PASSPHRASE_ENV = "LABGATE_RELEASE_PASSPHRASE"  # noqa: S105
ONLINE_PASSPHRASE_ENV = "LABGATE_RELEASE_ONLINE_PASSPHRASE"  # noqa: S105
ONLINE_KEY = "online.key"
TARGETS_KEY = "targets.key"

app = typer.Typer(
    cls=Group,
    help="Signed releases (TUF): make the repository, sign releases, rotate root, bundle.",
    no_args_is_help=True,
)

RepoOption = Annotated[
    Path, typer.Option("--repo", metavar="DIR", help="The release repository.", file_okay=False)
]
KeysOption = Annotated[
    Path,
    typer.Option("--keys", metavar="DIR", help="The directory of key files.", file_okay=False),
]
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        metavar="FILE",
        help="File holding the offline keys' passphrase.",
        show_default=f"${PASSPHRASE_ENV}, else a prompt per key",
        dir_okay=False,
    ),
]
OnlinePassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--online-passphrase-file",
        metavar="FILE",
        help="File holding the online key's passphrase.",
        show_default=f"${ONLINE_PASSPHRASE_ENV}, else a prompt",
        dir_okay=False,
    ),
]
DEFAULT_KEYS = Path("release-keys")


class Passphrases:
    """Where passphrases come from for one command: a file, the environment, or a prompt."""

    def __init__(self, env: str, path: Path | None, *, what: str) -> None:
        from labgate.releases.errors import KeyFileError

        from_env = os.environ.get(env)
        if path is not None and from_env is not None:
            raise KeyFileError(f"{what} given twice: both a file and ${env}; keep one")
        self.given: bytes | None = None
        if path is not None:
            # One trailing newline is the editor's, not the passphrase's.
            self.given = path.read_bytes().removesuffix(b"\n").removesuffix(b"\r")
        elif from_env is not None:
            self.given = from_env.encode("utf-8")

    def for_key(self, name: str, *, new: bool) -> bytes:
        if self.given is not None:
            return self.given
        text = typer.prompt(f"passphrase for {name}", hide_input=True, confirmation_prompt=new)
        return str(text).encode("utf-8")


def _now() -> datetime:
    return datetime.now(UTC)


def _load(path: Path, passphrases: Passphrases) -> CryptoSigner:
    from labgate.releases import keyfiles

    return keyfiles.load_key(path, passphrases.for_key(path.name, new=False))


def _offline_keys(keys: Path, prefix: str, passphrases: Passphrases) -> list[CryptoSigner]:
    from labgate.releases import keyfiles

    return [_load(path, passphrases) for path in keyfiles.key_names(keys, prefix)]


def _targets_signers(keys: Path, passphrase_file: Path | None) -> list[CryptoSigner]:
    offline = Passphrases(PASSPHRASE_ENV, passphrase_file, what="the offline passphrase")
    return _offline_keys(keys, "targets", offline)


def _online(keys: Path, passphrase_file: Path | None) -> CryptoSigner | None:
    path = keys / ONLINE_KEY
    if not path.exists():
        return None
    return _load(
        path, Passphrases(ONLINE_PASSPHRASE_ENV, passphrase_file, what="the online passphrase")
    )


@app.command()
def init(
    repo: RepoOption,
    keys: KeysOption = DEFAULT_KEYS,
    root_keys: Annotated[
        int, typer.Option("--root-keys", min=1, max=16, help="Root keys to make.")
    ] = 3,
    threshold: Annotated[
        int, typer.Option("--threshold", min=1, max=16, help="Root keys needed to sign.")
    ] = 2,
    passphrase_file: PassphraseFile = None,
    online_passphrase_file: OnlinePassphraseFile = None,
) -> None:
    """Make a repository: root (THRESHOLD of ROOT-KEYS offline keys) and the other roles."""
    from labgate.releases import keyfiles
    from labgate.releases.errors import InvalidRelease, RepositoryExists
    from labgate.releases.repository import Repository

    if threshold > root_keys:
        raise InvalidRelease(f"--threshold {threshold} is more than --root-keys {root_keys}")
    if (repo / "metadata" / "1.root.json").exists():
        raise RepositoryExists(f"{repo} already holds a release repository")
    offline = Passphrases(PASSPHRASE_ENV, passphrase_file, what="the offline passphrase")
    online = Passphrases(
        ONLINE_PASSPHRASE_ENV, online_passphrase_file, what="the online passphrase"
    )
    names = [f"root-{n}.key" for n in range(1, root_keys + 1)] + [TARGETS_KEY]
    for name in [*names, ONLINE_KEY]:
        if (keys / name).exists():
            raise RepositoryExists(f"{keys / name} exists; refusing to overwrite a signing key")
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    signers = {name: keyfiles.generate() for name in [*names, ONLINE_KEY]}
    # Every passphrase is asked (and checked) before anything is written.
    chosen = {name: offline.for_key(name, new=True) for name in names}
    chosen[ONLINE_KEY] = online.for_key(ONLINE_KEY, new=True)
    for name, signer in signers.items():
        keyfiles.write_key(keys / name, signer, chosen[name])
    Repository.create(
        repo,
        root_signers=[signers[name] for name in names[:-1]],
        root_threshold=threshold,
        targets_signer=signers[TARGETS_KEY],
        online_signer=signers[ONLINE_KEY],
        now=_now(),
    )
    typer.echo(
        f"release repository in {repo}: root {threshold} of {root_keys}, expiries root 365 d,"
    )
    typer.echo("  targets and snapshot 7 d, timestamp 1 d")
    for name in signers:
        typer.echo(f"  wrote {keys / name}")
    typer.echo(f"give each root-N.key to its holder; {ONLINE_KEY} goes to the control server")


@app.command()
def add(
    repo: RepoOption,
    version: Annotated[str, typer.Option("--version", metavar="V", help="Release version.")],
    compatible: Annotated[
        list[str],
        typer.Option("--compatible", metavar="MODEL", help="A model it runs on (repeatable)."),
    ],
    artifacts: Annotated[
        list[Path],
        typer.Argument(metavar="ARTIFACT...", exists=True, dir_okay=False, readable=True),
    ],
    keys: KeysOption = DEFAULT_KEYS,
    passphrase_file: PassphraseFile = None,
    online_passphrase_file: OnlinePassphraseFile = None,
) -> None:
    """Sign ARTIFACTs as release V for MODELs (targets key, offline)."""
    from labgate.releases.repository import Repository

    repository = Repository.open(repo)
    added = repository.add(
        version=version,
        compatible=compatible,
        artifacts=artifacts,
        signers=_targets_signers(keys, passphrase_file),
        now=_now(),
    )
    for entry in added:
        typer.echo(f"{entry.path}  length {entry.length}  sha256 {entry.sha256}")
    _publish(repository, keys, online_passphrase_file)


def _publish(repository: object, keys: Path, online_passphrase_file: Path | None) -> None:
    from labgate.releases.repository import Repository

    assert isinstance(repository, Repository)
    online = _online(keys, online_passphrase_file)
    if online is None:
        typer.echo("no online key here: the control server publishes it at its next re-signing")
        return
    roles = repository.refresh_online(online, now=_now())
    typer.echo(f"published: re-signed {', '.join(roles) or 'nothing (already current)'}")


@app.command("rotate-root")
def rotate_root(
    repo: RepoOption,
    keys: KeysOption = DEFAULT_KEYS,
    retire: Annotated[
        list[str],
        typer.Option("--retire", metavar="NAME", help="A root key file to drop (repeatable)."),
    ] = [],  # noqa: B006 (typer reads the default; it is never mutated)
    new_keys: Annotated[
        int, typer.Option("--new-keys", min=0, max=16, help="New root keys to make.")
    ] = 1,
    threshold: Annotated[
        int | None,
        typer.Option(
            "--threshold",
            min=1,
            max=16,
            help="The new root's threshold.",
            show_default="the old one",
        ),
    ] = None,
    new_online_key: Annotated[
        bool,
        typer.Option(
            "--new-online-key", help="Also replace the online key (after a server compromise)."
        ),
    ] = False,
    passphrase_file: PassphraseFile = None,
    online_passphrase_file: OnlinePassphraseFile = None,
) -> None:
    """Root N+1: retire root keys, add new ones; signed by the old threshold and the new.

    With --new-online-key, root N+1 names a new online key: what the old one signed (and any
    timestamp a compromised server inflated) stops verifying, and devices follow the new one."""
    from labgate.releases import keyfiles
    from labgate.releases.errors import KeyFileError
    from labgate.releases.repository import Repository

    repository = Repository.open(repo)
    offline = Passphrases(PASSPHRASE_ENV, passphrase_file, what="the offline passphrase")
    present = {path.name: path for path in keyfiles.key_names(keys, "root-")}
    for name in retire:
        if name not in present:
            raise KeyFileError(f"--retire {name}: no such key file in {keys}")
    old = repository.root().signed
    signers = {name: _load(path, offline) for name, path in present.items()}
    numbers = [
        int(n.removeprefix("root-").removesuffix(".key")) for n in present if n[5:-4].isdigit()
    ]
    start = max(numbers, default=0) + 1
    made = {f"root-{n}.key": keyfiles.generate() for n in range(start, start + new_keys)}
    kept = [
        s.public_key
        for name, s in signers.items()
        if name not in retire and s.public_key.keyid in old.roles["root"].keyids
    ]
    # The new keys are on disk before any root names them: a root must never list a lost key.
    chosen = {name: offline.for_key(name, new=True) for name in made}
    online = keyfiles.generate() if new_online_key else None
    staged = keys / (ONLINE_KEY + ".new")
    written = [keys / name for name in made] + ([staged] if online else [])
    for name, signer in made.items():
        keyfiles.write_key(keys / name, signer, chosen[name])
    if online is not None:
        asked = Passphrases(
            ONLINE_PASSPHRASE_ENV, online_passphrase_file, what="the online passphrase"
        )
        keyfiles.write_key(staged, online, asked.for_key(ONLINE_KEY, new=True))
    try:
        version = repository.rotate_root(
            root_keys=kept + [s.public_key for s in made.values()],
            threshold=threshold or old.roles["root"].threshold,
            signers=[*signers.values(), *made.values()],
            now=_now(),
            online_key=None if online is None else online.public_key,
        )
    except Exception:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    for name in made:
        typer.echo(f"  wrote {keys / name}")
    if online is not None:
        if (keys / ONLINE_KEY).exists():
            (keys / ONLINE_KEY).replace(keys / (ONLINE_KEY + ".retired"))
        staged.replace(keys / ONLINE_KEY)
        roles = repository.refresh_online(online, now=_now())
        typer.echo(f"  wrote {keys / ONLINE_KEY} (new; give it to the control server)")
        typer.echo(f"published with the new online key: {', '.join(roles)}")
    typer.echo(f"root {version} signed; devices follow it at their next refresh")
    if retire:
        typer.echo(f"retired: {', '.join(retire)} (destroy those files)")


@app.command()
def renew(
    repo: RepoOption,
    keys: KeysOption = DEFAULT_KEYS,
    passphrase_file: PassphraseFile = None,
    online_passphrase_file: OnlinePassphraseFile = None,
) -> None:
    """Re-sign targets with a fresh 7-day expiry (the weekly chore), then publish."""
    from labgate.releases.repository import Repository

    repository = Repository.open(repo)
    version = repository.resign_targets(signers=_targets_signers(keys, passphrase_file), now=_now())
    typer.echo(f"targets {version} signed")
    _publish(repository, keys, online_passphrase_file)


@app.command()
def timestamp(
    repo: RepoOption,
    keys: KeysOption = DEFAULT_KEYS,
    online_passphrase_file: OnlinePassphraseFile = None,
) -> None:
    """Re-sign snapshot and timestamp when due, with the online key (the server does this)."""
    from labgate.releases.errors import KeyFileError
    from labgate.releases.repository import Repository

    repository = Repository.open(repo)
    online = _online(keys, online_passphrase_file)
    if online is None:
        raise KeyFileError(f"{keys / ONLINE_KEY} does not exist")
    roles = repository.refresh_online(online, now=_now())
    typer.echo(f"re-signed {', '.join(roles) or 'nothing (not due)'}")


@app.command()
def bundle(
    repo: RepoOption,
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="DIR", help="Where to write (empty or new).", file_okay=False
        ),
    ],
) -> None:
    """Write metadata and targets to DIR for an offline install (a USB stick)."""
    from labgate.releases.repository import Repository

    written = Repository.open(repo).bundle(out)
    typer.echo(f"bundle in {out}: {len(written)} files")


@app.command()
def show(repo: RepoOption) -> None:
    """The releases signed, and when each role expires."""
    from labgate.releases.repository import Repository

    repository = Repository.open(repo)
    root = repository.root().signed
    role = root.roles["root"]
    typer.echo(
        f"root {root.version}: {role.threshold} of {len(role.keyids)},"
        f" expires {root.expires.isoformat()}"
    )
    latest = repository.latest_targets().signed
    typer.echo(f"targets {latest.version}: expires {latest.expires.isoformat()}")
    snapshot = repository.snapshot().signed
    typer.echo(f"snapshot {snapshot.version}: expires {snapshot.expires.isoformat()}")
    stamp = repository.timestamp().signed
    typer.echo(f"timestamp {stamp.version}: expires {stamp.expires.isoformat()}")
    for target, info in repository.releases():
        typer.echo(
            f"  {target.path}  {info.version}  {','.join(info.compatible)}  {target.length} B"
            f"  sha256 {target.hashes['sha256']}"
        )
