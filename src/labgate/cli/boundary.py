"""The one place where an operational error becomes one line on stderr and exit status 1,
and where every command's user-facing error line is formatted (`fail`: `error: <what>`).

An operational error is the world refusing: an address in use, a file missing or unreadable, a
wrong passphrase, a configuration the part refuses. Each part raises its own exception tree for
those, and the operating system raises OSError. None of that deserves a Python traceback; a bug
(any other exception) still shows one, since that is what a bug report needs.

The trees are named by module so that `labgate --help` imports none of the parts: an exception of
a module never imported cannot be raised.
"""

from __future__ import annotations

import sys

import typer

# (module, class): the base of each part's exception tree.
TREES = (
    ("labgate.pki.errors", "PkiError"),
    ("labgate.control.errors", "ControlError"),
    ("labgate.gateway.errors", "GatewayError"),
    ("labgate.gateway.auditchain", "AuditError"),
    ("labgate.auth.errors", "AuthError"),
    ("labgate.agent.errors", "AgentError"),
    ("labgate.login.errors", "LoginError"),
    ("labgate.instrument.errors", "SimulatorError"),
    ("labgate.demo.children", "ChildFailed"),
    ("labgate.demo.enrolment", "EnrolmentFailed"),
    ("labgate.cli.ca", "CliError"),
    ("labgate.releases.errors", "ReleaseError"),
    ("sqlite3", "OperationalError"),
    ("sqlalchemy.exc", "OperationalError"),
)


def is_operational(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return True
    for module_name, class_name in TREES:
        tree = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(tree, type) and isinstance(error, tree):
            return True
    return False


def describe(error: BaseException) -> str:
    """One line: what failed and on what. An OSError without its `[Errno N]` noise; a database
    driver's error by its first line only (the rest can carry the statement)."""
    if isinstance(error, OSError):
        text = error.strerror or str(error)
        names = [str(n) for n in (error.filename, error.filename2) if n is not None]
        return f"{text}: {' -> '.join(names)}" if names else text
    module = type(error).__module__
    if module == "sqlite3" or module.startswith("sqlalchemy"):
        original = getattr(error, "orig", None) or error
        first = str(original).strip().splitlines()[:1]
        return f"database: {first[0] if first else type(original).__name__}"
    text = "; ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    return text or type(error).__name__


def report(error: BaseException) -> typer.Exit:
    """Say it on stderr; the caller raises the returned Exit (status 1)."""
    return fail(describe(error))


def fail(problem: str | BaseException, *, status: int = 1) -> typer.Exit:
    """Say `error: <problem>` on stderr, as every command does; the caller raises the returned
    Exit (`status`: 1 for the world refusing, 2 for a usage or configuration mistake)."""
    text = describe(problem) if isinstance(problem, BaseException) else problem
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
    return typer.Exit(status)
