"""`labgate ca`: make and run labgate's own certificate authority from the command line.

The passphrase that guards the CA's keys comes from LABGATE_CA_PASSPHRASE or --passphrase-file,
never from an argument (arguments show in `ps` and shell history). A PKCS#12 password likewise
comes from LABGATE_P12_PASSWORD or --p12-password-file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labgate.cli.boundary import fail
from labgate.cli.group import Group

if TYPE_CHECKING:
    from labgate.pki import CertificateAuthority, Entry, Issued

# Names of environment variables, not secrets.
PASSPHRASE_ENV = "LABGATE_CA_PASSPHRASE"  # noqa: S105
P12_PASSWORD_ENV = "LABGATE_P12_PASSWORD"  # noqa: S105

app = typer.Typer(
    cls=Group,
    help="labgate's certificate authority: issue, sign, renew, revoke, publish a CRL.",
    no_args_is_help=True,
)


# Choices as plain names so `labgate ca --help` need not import cryptography;
# a test holds them equal to labgate.pki's enums.
class ProfileName(StrEnum):
    SERVER = "server"
    CLIENT = "client"
    DEVICE = "device"
    GATEWAY = "gateway"


class KeyTypeName(StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_3072 = "rsa-3072"
    ED25519 = "ed25519"


DirOption = Annotated[Path, typer.Option("--dir", metavar="DIR", help="The CA's directory.")]
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        metavar="FILE",
        help="File holding the CA key passphrase.",
        show_default=f"${PASSPHRASE_ENV}",
        dir_okay=False,
    ),
]
DaysOption = Annotated[
    int | None,
    typer.Option("--days", metavar="DAYS", help="Lifetime in days.", show_default="the profile's"),
]
ProfileOption = Annotated[ProfileName, typer.Option("--profile", help="Certificate profile.")]


class CliError(Exception):
    """A problem with the command's input, reported as `error: ...` with exit status 1."""


@contextmanager
def _reported() -> Iterator[None]:
    """Turn the CA's errors into one clear line on stderr and exit status 1 (no traceback)."""
    from labgate.pki import PkiError

    try:
        yield
    except (PkiError, CliError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.strerror}: {exc.filename}") from None


def _secret(env: str, path: Path | None, *, what: str, option: str) -> bytes | None:
    from_env = os.environ.get(env)
    if path is not None and from_env is not None:
        raise CliError(f"{what} given twice: both {option} and ${env} are set; keep one")
    if path is not None:
        # One trailing newline is the editor's, not the passphrase's.
        return path.read_bytes().removesuffix(b"\n").removesuffix(b"\r")
    return None if from_env is None else from_env.encode("utf-8")


def _passphrase(path: Path | None) -> bytes | None:
    return _secret(PASSPHRASE_ENV, path, what="the CA passphrase", option="--passphrase-file")


@contextmanager
def _opened(directory: Path, passphrase_file: Path | None) -> Iterator[CertificateAuthority]:
    from labgate.pki import CertificateAuthority

    with CertificateAuthority.open(directory, passphrase=_passphrase(passphrase_file)) as ca:
        yield ca


def _say_written(paths: list[Path], issued: Issued) -> None:
    identity = issued.identity or "no labgate identity"
    typer.echo(f"{issued.profile} certificate, serial {issued.serial:x}, {identity}")
    for path in paths:
        typer.echo(f"  wrote {path}")


@app.command()
def init(
    directory: DirOption,
    name: Annotated[str, typer.Option("--name", help="The CA's name.")] = "Lab CA",
    key_type: Annotated[
        KeyTypeName, typer.Option("--key-type", help="Key type of the root and issuing CA.")
    ] = KeyTypeName.ECDSA_P256,
    passphrase_file: PassphraseFile = None,
    unencrypted_keys: Annotated[
        bool,
        typer.Option("--unencrypted-keys", help="Store the CA keys unencrypted (demos only)."),
    ] = False,
) -> None:
    """Make a two-tier CA: a root (10 years) and an issuing CA (2 years) signed by it."""
    from labgate.pki import CertificateAuthority, KeyType

    with _reported():
        passphrase = _passphrase(passphrase_file)
        if unencrypted_keys and passphrase is not None:
            raise CliError("--unencrypted-keys and a passphrase contradict each other; keep one")
        if unencrypted_keys:
            typer.secho(
                "WARNING: the CA's private keys will be stored UNENCRYPTED. Anyone who can read "
                f"{directory} can issue certificates as this CA. Use this for demos only.",
                fg=typer.colors.RED,
                bold=True,
                err=True,
            )
        with CertificateAuthority.init(
            directory,
            name=name,
            key_type=KeyType(key_type.value),
            passphrase=passphrase,
            unencrypted=unencrypted_keys,
        ) as ca:
            typer.echo(f"made CA {name!r} in {directory}")
            typer.echo(f"  trust anchor for clients: {ca.directory / 'root.crt'}")
            typer.echo(f"  issuing CA:               {ca.directory / 'issuing.crt'}")


ForceOption = Annotated[
    bool, typer.Option("--force", help="Replace output files that already exist.")
]
CombinedOption = Annotated[
    bool, typer.Option("--combined", help="Also PREFIX.pem: chain and key in one file.")
]
P12Option = Annotated[
    bool, typer.Option("--p12", help=f"Also PREFIX.p12 (password from ${P12_PASSWORD_ENV}).")
]
P12PasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--p12-password-file",
        metavar="FILE",
        help="File holding the PKCS#12 password.",
        show_default=f"${P12_PASSWORD_ENV}",
        dir_okay=False,
    ),
]
# Every file `issue` may write for one PREFIX; a renewal keeps each one that exists up to date.
OUTPUTS = (".crt", ".key", ".pem", ".p12")


def _p12_password(p12_password_file: Path | None) -> bytes | None:
    return _secret(
        P12_PASSWORD_ENV,
        p12_password_file,
        what="the PKCS#12 password",
        option="--p12-password-file",
    )


def _output(prefix: Path, suffix: str) -> Path:
    return prefix.with_name(prefix.name + suffix)


def _refuse_to_clobber(
    prefix: Path, writing: set[str], *, force: bool, keeping: frozenset[str] = frozenset()
) -> None:
    """Never replace a file silently, and never leave one beside new ones holding the old
    certificate (a stale PREFIX.pem is what qslib would go on using). `keeping`: files that stay
    as they are and remain right (the key of a renewal that keeps its key)."""
    if not prefix.parent.is_dir():
        raise CliError(f"{prefix.parent} is not a directory; make it first (--out {prefix})")
    present = [s for s in OUTPUTS if s not in keeping and _output(prefix, s).exists()]
    replaced = [str(_output(prefix, s)) for s in present if s in writing]
    stale = [str(_output(prefix, s)) for s in present if s not in writing]
    if replaced and not force:
        raise CliError(f"{', '.join(replaced)} already exist; --force replaces them")
    if stale:
        raise CliError(
            f"{', '.join(stale)} would be left holding the old certificate: write it too "
            "(--combined for .pem, --p12 for .p12) or remove it"
        )


@app.command()
def issue(
    directory: DirOption,
    profile: ProfileOption,
    name: Annotated[str, typer.Option("--name", help="Holder's name (user, device, host).")],
    out: Annotated[
        Path, typer.Option("--out", metavar="PREFIX", help="Write PREFIX.crt and PREFIX.key.")
    ],
    dns: Annotated[
        list[str] | None, typer.Option("--dns", metavar="NAME", help="DNS SAN (repeatable).")
    ] = None,
    ip: Annotated[
        list[str] | None, typer.Option("--ip", metavar="ADDRESS", help="IP SAN (repeatable).")
    ] = None,
    uri: Annotated[
        list[str] | None, typer.Option("--uri", metavar="URI", help="URI SAN (repeatable).")
    ] = None,
    days: DaysOption = None,
    combined: CombinedOption = False,
    p12: P12Option = False,
    p12_password_file: P12PasswordFile = None,
    key_type: Annotated[
        KeyTypeName, typer.Option("--key-type", help="Key type of the new key pair.")
    ] = KeyTypeName.ECDSA_P256,
    force: ForceOption = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Make a key pair and a certificate for it. Refuses to replace files without --force."""
    from labgate.pki import KeyType, Profile

    with _reported():
        password = _p12_password(p12_password_file)
        if p12 and not password:
            raise CliError(
                f"--p12 needs a password: set ${P12_PASSWORD_ENV} or give --p12-password-file"
            )
        if password is not None and not p12:
            raise CliError("a PKCS#12 password was given without --p12")
        writing = (
            {".crt", ".key"} | ({".pem"} if combined else set()) | ({".p12"} if p12 else set())
        )
        _refuse_to_clobber(out, writing, force=force)
        with _opened(directory, passphrase_file) as ca:
            issued = ca.issue(
                Profile(profile.value),
                name,
                dns=dns or (),
                ips=ip or (),
                uris=uri or (),
                days=days,
                key_type=KeyType(key_type.value),
                destination=out,
            )
            with ca.handing_out(issued):
                written = issued.write(
                    out, combined=combined, p12_password=password if p12 else None
                )
            _say_written(written, issued)


@app.command()
def sign(
    csr: Annotated[
        Path, typer.Argument(metavar="CSR", help="The certificate signing request (PEM or DER).")
    ],
    directory: DirOption,
    profile: ProfileOption,
    out: Annotated[
        Path, typer.Option("--out", metavar="FILE", help="Write the certificate chain here.")
    ],
    days: DaysOption = None,
    force: ForceOption = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Sign a CSR: the key never leaves its owner. What the profile forbids is refused."""
    from labgate.pki import Profile

    with _reported():
        request = csr.read_bytes()
        if out.exists() and not force:
            raise CliError(f"{out} already exists; --force replaces it")
        if not out.parent.is_dir():
            raise CliError(f"{out.parent} is not a directory; make it first (--out {out})")
        with _opened(directory, passphrase_file) as ca:
            issued = ca.sign_csr(request, Profile(profile.value), days=days, destination=out)
            with ca.handing_out(issued):
                issued.write_file(out, issued.chain_pem)
            _say_written([out], issued)


@app.command()
def renew(
    directory: DirOption,
    cert: Annotated[Path, typer.Option("--cert", metavar="FILE", help="The certificate to renew.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="PREFIX",
            help="Write PREFIX.crt (and .key), and update PREFIX.pem/.p12 if present.",
        ),
    ],
    new_key: Annotated[bool, typer.Option("--new-key", help="Make a new key pair too.")] = False,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            metavar="FILE",
            help="The current private key, when .pem/.p12 must be rewritten without --new-key.",
            show_default="PREFIX.key, else the .key beside --cert",
            dir_okay=False,
        ),
    ] = None,
    combined: CombinedOption = False,
    p12: P12Option = False,
    p12_password_file: P12PasswordFile = None,
    days: DaysOption = None,
    force: ForceOption = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Same subject and SANs, new serial and validity. Every output at PREFIX stays consistent:
    an existing PREFIX.pem or PREFIX.p12 is rewritten with the new certificate."""
    import dataclasses

    with _reported():
        old = cert.read_bytes()
        combined = combined or _output(out, ".pem").exists()
        p12 = p12 or _output(out, ".p12").exists()
        password = _p12_password(p12_password_file)
        if p12 and not password:
            raise CliError(
                f"{_output(out, '.p12')} must be rewritten too: give its password "
                f"(${P12_PASSWORD_ENV} or --p12-password-file)"
            )
        if password is not None and not p12:
            raise CliError("a PKCS#12 password was given without --p12")
        bundles = combined or p12
        current_key = None
        if bundles and not new_key:
            current_key = _current_key(old, [key, _output(out, ".key"), cert.with_suffix(".key")])
        writing = {".crt"} | ({".key"} if new_key or bundles else set())
        writing |= ({".pem"} if combined else set()) | ({".p12"} if p12 else set())
        keeping: frozenset[str] = frozenset()
        if not new_key and not bundles and _output(out, ".key").exists():
            # Same key, and PREFIX.key stays: it must be the key of this certificate.
            _current_key(old, [_output(out, ".key")])
            keeping = frozenset({".key"})
        _refuse_to_clobber(out, writing, force=force, keeping=keeping)
        with _opened(directory, passphrase_file) as ca:
            issued = ca.renew(old, new_key=new_key, days=days, destination=out)
            if current_key is not None:
                issued = dataclasses.replace(issued, key_pem=current_key)
            with ca.handing_out(issued):
                written = issued.write(out, combined=combined, p12_password=password)
            _say_written(written, issued)


def _current_key(cert_pem: bytes, candidates: list[Path | None]) -> bytes:
    """The private key of `cert_pem` from the first candidate file that exists (PEM, unencrypted),
    refused if it belongs to another certificate."""
    from labgate.pki import certificates, keys

    path = next((c for c in candidates if c is not None and c.is_file()), None)
    if path is None:
        raise CliError(
            "the new certificate keeps its key, and .pem/.p12 need it: give --key, or --new-key"
        )
    data = path.read_bytes()
    private = keys.load_private(data, None, source=str(path))
    public = certificates.public_key_of(
        certificates.load_certificate(cert_pem, source="the certificate to renew")
    )
    if keys.public_der(private.public_key()) != keys.public_der(public):
        raise CliError(f"{path} is not the key of the certificate to renew")
    return keys.private_pem(private, None)


@app.command()
def revoke(
    directory: DirOption,
    serial: Annotated[
        str | None,
        typer.Option(
            "--serial",
            metavar="HEX",
            help="Its serial in hex (colons allowed). One of --serial/--cert/--identity is needed.",
        ),
    ] = None,
    cert: Annotated[
        Path | None,
        typer.Option(
            "--cert",
            metavar="FILE",
            help="The certificate file. One of --serial/--cert/--identity is needed.",
        ),
    ] = None,
    identity: Annotated[
        str | None,
        typer.Option(
            "--identity",
            metavar="URI",
            help="Every unrevoked, unexpired certificate naming this identity "
            "(labgate:user:alice): offboarding. One of --serial/--cert/--identity is needed.",
        ),
    ] = None,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            metavar="REASON",
            help="keyCompromise, superseded, cessationOfOperation, privilegeWithdrawn, ...",
        ),
    ] = "unspecified",
    passphrase_file: PassphraseFile = None,
) -> None:
    """Revoke certificates, named by exactly one of --serial, --cert or --identity; the next CRL
    lists them."""
    with _reported():
        if sum(given is not None for given in (serial, cert, identity)) != 1:
            raise CliError("give exactly one of --serial, --cert and --identity")
        with _opened(directory, passphrase_file) as ca:
            if serial is not None:
                numbers = [_serial(serial)]
            elif cert is not None:
                numbers = [ca.entry_of(cert.read_bytes()).serial]
            else:
                assert identity is not None
                numbers = _held_by(ca, identity)
            for number in numbers:
                entry = ca.revoke(number, reason)
                typer.echo(f"revoked serial {entry.serial:x} ({entry.name}, {reason})")


def _held_by(ca: CertificateAuthority, identity: str) -> list[int]:
    if not identity.startswith("labgate:"):
        raise CliError(f"--identity {identity!r}: expected a labgate: URI, e.g. labgate:user:alice")
    now = datetime.now(UTC)
    held = [
        e.serial
        for e in ca.inventory.entries(unexpired_at=now)
        if e.identity == identity and e.revoked_at is None
    ]
    if not held:
        raise CliError(f"no unrevoked, unexpired certificate names {identity}")
    return held


def _serial(text: str) -> int:
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise CliError(f"--serial {text!r} is not a hexadecimal serial") from None


@app.command()
def crl(
    directory: DirOption,
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Write the CRL here.")],
    der: Annotated[bool, typer.Option("--der", help="DER instead of PEM.")] = False,
    next_update: Annotated[
        int,
        typer.Option(
            "--next-update", metavar="HOURS", help="Hours until relying parties want a new one."
        ),
    ] = 24,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Publish the CRLs: one from the issuing CA and one from each retired issuing CA whose
    certificates are not all expired. PEM: all in FILE (OpenSSL and the gateway read every CRL
    in it). DER holds one: FILE is the current issuing CA's, STEM-SERIAL.der each retired one's."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from labgate.pki.atomic import write_atomic

    with _reported():
        if next_update < 1:
            raise CliError(f"--next-update must be at least 1 hour, not {next_update}")
        with _opened(directory, passphrase_file) as ca:
            encoding = Encoding.DER if der else Encoding.PEM
            crls = ca.crls(next_update=timedelta(hours=next_update), encoding=encoding)
            if der:
                for index, (issuer, data) in enumerate(crls):
                    path = out if index == 0 else _retired_crl_path(out, issuer.serial_number)
                    write_atomic(path, data)
                    typer.echo(f"wrote {path} (next update in {next_update} h)")
            else:
                write_atomic(out, b"".join(data for _, data in crls))
                typer.echo(f"wrote {out}: {len(crls)} CRL(s) (next update in {next_update} h)")


def _retired_crl_path(out: Path, serial: int) -> Path:
    return out.with_name(f"{out.stem}-{serial:x}{out.suffix}")


@app.command("rotate-issuing")
def rotate_issuing(
    directory: DirOption,
    key_type: Annotated[
        KeyTypeName | None,
        typer.Option(
            "--key-type", help="Key type of the new issuing CA.", show_default="the old one's"
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """A new issuing CA under the same root; the old one keeps signing CRLs for what it issued
    until the last of those expires. Clients that trust root.crt see no change. Needs root.key."""
    from labgate.pki import KeyType

    with _reported():
        passphrase = _passphrase(passphrase_file)
        with _opened(directory, passphrase_file) as ca:
            old = ca.issuing
            new = ca.rotate_issuing(
                passphrase=passphrase,
                key_type=None if key_type is None else KeyType(key_type.value),
            )
            typer.echo(
                f"new issuing CA, serial {new.serial_number:x}, "
                f"until {new.not_valid_after_utc:%Y-%m-%d}"
            )
            typer.echo(f"  now in {ca.directory / 'issuing.crt'}")
            typer.echo(
                f"  retired: serial {old.serial_number:x}, signs CRLs only "
                f"(kept as issuing-{old.serial_number:x}.crt)"
            )
            typer.echo("  publish CRLs again (labgate ca crl): each live issuing CA signs one")


@app.command("list")
def list_(
    directory: DirOption,
    expiring: Annotated[
        int | None,
        typer.Option(
            "--expiring",
            metavar="DAYS",
            help="Only valid ones expiring within DAYS (not revoked).",
            show_default="every one",
        ),
    ] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Only revoked ones.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """The inventory: every certificate issued, renewed or revoked. Needs no passphrase."""
    from labgate.pki.authority import open_inventory

    with _reported():
        if expiring is not None and expiring < 0:
            raise CliError(f"--expiring must be 0 or more days, not {expiring}")
        now = datetime.now(UTC)
        before = None if expiring is None else now + timedelta(days=expiring)
        inventory = open_inventory(directory)
        try:
            # "Expiring" means still valid now and not for much longer: yesterday's expired
            # day-long client certificates would otherwise bury the ones that need renewing.
            entries = inventory.entries(
                expiring_before=before,
                unexpired_at=None if expiring is None else now,
                revoked=revoked,
            )
        finally:
            inventory.close()
        if json_output:
            typer.echo(json.dumps([_as_json(e, now) for e in entries], indent=2))
        else:
            _table(entries, now)


def _as_json(entry: Entry, now: datetime) -> dict[str, object]:
    def iso(when: datetime | None) -> str | None:
        return None if when is None else when.isoformat().replace("+00:00", "Z")

    return {
        "serial": format(entry.serial, "x"),
        "profile": entry.profile,
        "name": entry.name,
        "identity": entry.identity,
        "status": entry.status(now),
        "not_before": iso(entry.not_before),
        "not_after": iso(entry.not_after),
        "issued_at": iso(entry.issued_at),
        "renewed_from": None if entry.renewed_from is None else format(entry.renewed_from, "x"),
        # The serial of the CA certificate that signed it (after a rotation, which issuing CA).
        "issuer": None if entry.issuer is None else format(entry.issuer, "x"),
        "revoked_at": iso(entry.revoked_at),
        "revocation_reason": entry.revocation_reason,
    }


LIST_COLUMNS = ("serial", "profile", "name", "identity", "expires", "status")
# Colours for a terminal; a pipe gets none.
STATUS_COLOURS = {
    "valid": "green",
    "expired": "yellow",
    "revoked": "red",
    "pending": "cyan",
    "failed": "red",
    "orphaned": "red",
}


def _rows(entries: list[Entry], now: datetime) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for entry in entries:
        status = entry.status(now)
        if entry.revocation_reason and status != "valid":
            status = f"{status} ({entry.revocation_reason})"
        rows.append(
            (
                format(entry.serial, "x"),
                entry.profile,
                entry.name,
                entry.identity or "-",
                entry.not_after.strftime("%Y-%m-%d %H:%M"),
                status,
            )
        )
    return rows


def _table(entries: list[Entry], now: datetime) -> None:
    """A terminal gets a table that reads at 80 columns; anything else plain aligned text, one
    certificate a line, nothing cut (for grep and awk; --json for programs)."""
    rows = _rows(entries, now)
    if sys.stdout.isatty():
        import shutil

        _terminal_table(rows, width=shutil.get_terminal_size().columns)
    else:
        typer.echo(plain_table(rows), nl=False)


def plain_table(rows: list[tuple[str, ...]]) -> str:
    lines = [LIST_COLUMNS, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(LIST_COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def _terminal_table(rows: list[tuple[str, ...]], *, width: int) -> None:
    from rich.console import Console

    Console(file=sys.stdout, width=width).print(terminal_table(rows, width=width))


def terminal_table(rows: list[tuple[str, ...]], *, width: int) -> object:
    """Wide enough: one column each. Narrower (a 40-digit serial leaves little of 80 columns):
    the serial on a line of its own above who holds it, so no column shrinks to a letter."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"{len(rows)} certificate(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    wide = width >= 130
    if wide:
        for column in LIST_COLUMNS:
            # Serials and identities are copied into other commands: never wrap them.
            copied = column in ("serial", "identity")
            table.add_column(column, no_wrap=copied, overflow="ellipsis" if copied else "fold")
    else:
        table.add_column("serial / holder", no_wrap=True)
        table.add_column("expires", no_wrap=True)
        table.add_column("status", overflow="fold")
    for serial, profile, name, identity, expires, status in rows:
        word = status.split(" ")[0]
        shown = f"[{STATUS_COLOURS.get(word, 'white')}]{status}[/]"
        if wide:
            table.add_row(serial, profile, name, identity, expires, shown)
        else:
            holder = f"  {profile} {name}" + ("" if identity == "-" else f"  {identity}")
            table.add_row(f"{serial}\n{holder}", expires.replace(" ", "\n"), shown)
    return table


@app.command("check-chain")
def check_chain(
    chain_file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="The chain to install (PEM): leaf first, then intermediates."
        ),
    ],
    key: Annotated[
        Path, typer.Option("--key", metavar="KEY", help="Its private key (PEM, unencrypted).")
    ],
    name: Annotated[
        list[str],
        typer.Option(
            "--name", metavar="NAME", help="A DNS name or IP address it must cover (repeatable)."
        ),
    ],
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            metavar="ROOT",
            help="The issuing organisation's root, when FILE does not end with it.",
            show_default="the root at the end of FILE",
            dir_okay=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Before installing a certificate (a customer's own CA's, say): is the chain complete and in
    order, is KEY its key, is it valid now and for how long, does it cover every NAME. Each
    problem on a line of its own; exit status 1 if there is any."""
    from labgate.pki import chaincheck

    with _reported():
        chain = chaincheck.read_chain(chain_file.read_bytes())
        anchors = [] if ca_file is None else chaincheck.read_chain(ca_file.read_bytes())
        report = chaincheck.check_chain(
            chain,
            key_pem=key.read_bytes(),
            names=name,
            now=datetime.now(UTC),
            anchors=anchors,
            key_source=str(key),
        )
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "problems": list(report.problems),
                    "notes": list(report.notes),
                    "chain": list(report.subjects),
                    "names": list(report.names),
                    "not_after": None
                    if report.not_after is None
                    else report.not_after.isoformat().replace("+00:00", "Z"),
                    "days_left": None if report.days_left is None else round(report.days_left, 2),
                },
                indent=2,
            )
        )
    else:
        for problem in report.problems:
            typer.secho(f"problem: {problem}", fg=typer.colors.RED)
        for note in report.notes:
            typer.echo(f"note: {note}")
        if report.not_after is not None and report.days_left is not None:
            typer.echo(
                f"leaf valid until {report.not_after:%Y-%m-%d %H:%M}Z "
                f"({report.days_left:.1f} days from now); chain of {len(report.subjects)}; "
                f"names: {', '.join(report.names) or 'none'}"
            )
        typer.echo(
            "ok: the chain may be installed" if report.ok else f"{len(report.problems)} problem(s)"
        )
    if not report.ok:
        raise typer.Exit(1)
