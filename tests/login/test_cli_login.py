"""`labgate login` and `labgate logout` through Typer's runner, and once as a real process with
the password on standard input; the password is then looked for everywhere it must not be."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.control.conftest import LiveServer
from tests.login.conftest import NEW_PASSWORD, Person
from typer.testing import CliRunner

from labgate.cli.app import app
from labgate.login.store import CONFIG_DIR_ENV, LoginStore


def invoke(*args: str, input: str = "") -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def login_args(live_server: LiveServer, user: str = "erin") -> list[str]:
    return ["login", live_server.url, "--server-ca", str(live_server.root), "--user", user]


def test_login_then_logout_through_the_command_line(
    live_server: LiveServer, person: Person, store: LoginStore
) -> None:
    code, out, err = invoke(
        *login_args(live_server), input=f"{person.one_time}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )
    assert code == 0, err
    assert f"logged in as erin at {live_server.url}" in out
    assert "choose a new password" in err
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    tokens = store.require().tokens
    code, out, err = invoke("logout")
    assert code == 0, err
    assert "logged out erin" in out
    assert not store.path.exists()
    with live_server.client() as http:
        bearer = {"Authorization": f"Bearer {tokens.access_token}"}
        assert http.get("/api/v1/me", headers=bearer).status_code == 401
    code, out, _ = invoke("logout")
    assert code == 0 and "not logged in" in out


def test_a_wrong_password_exits_nonzero_with_a_clear_line(
    live_server: LiveServer, person: Person, store: LoginStore
) -> None:
    code, out, err = invoke(*login_args(live_server), input="wrong-guess-for-erin\n")
    assert code == 1
    assert "error:" in err and "wrong user name or password" in err
    assert "wrong-guess-for-erin" not in out + err
    assert not store.path.exists()


def test_login_refuses_a_password_argument_there_is_none_to_give(live_server: LiveServer) -> None:
    code, _, err = invoke(*login_args(live_server), "--password", "x")
    assert code == 2 and "--password" in err


def test_a_group_readable_token_file_is_made_0600_with_a_warning(
    live_server: LiveServer, person: Person, store: LoginStore
) -> None:
    invoke(*login_args(live_server), input=f"{person.one_time}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    store.path.chmod(0o644)
    code, _, err = invoke("logout")
    assert code == 0, err
    assert "was readable by others (mode 644)" in err and "log in again" in err


def test_a_token_file_replaced_by_a_symbolic_link_is_refused(
    live_server: LiveServer, person: Person, store: LoginStore, tmp_path: Path
) -> None:
    invoke(*login_args(live_server), input=f"{person.one_time}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    elsewhere = tmp_path / "elsewhere.json"
    store.path.rename(elsewhere)
    store.path.symlink_to(elsewhere)
    code, _, err = invoke("logout")
    assert code == 1 and "symbolic link" in err


# The one run as a real process (two, with the wrong password): argv and environment are real.
@pytest.mark.slow
def test_a_real_process_reads_the_password_from_stdin_and_leaks_it_nowhere(
    live_server: LiveServer,
    person: Person,
    store: LoginStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the server runs in this process: its logs are caught here
    env = {**os.environ, CONFIG_DIR_ENV: str(store.directory)}
    process = subprocess.Popen(
        [sys.executable, "-m", "labgate", *login_args(live_server)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    # What other users of this machine could read of the process: its argv and environment.
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{process.pid}/environ").read_bytes()
    out, err = process.communicate(
        f"{person.one_time}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n".encode(), timeout=60
    )
    assert process.returncode == 0, err.decode()
    assert b"logged in as erin" in out
    seen = {
        "argv": cmdline,
        "environment": environ,
        "stdout": out,
        "stderr": err,
        "server log": caplog.text.encode(),
    }
    seen |= {str(path): path.read_bytes() for path in store.directory.iterdir()}
    # The server's own files: its database (audit records included), keys, logs.
    server_files = [p for p in live_server.settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.suffix in (".db", ".sqlite", ".sqlite3") for p in server_files) or (
        live_server.settings.database_url
    )
    seen |= {str(path): path.read_bytes() for path in server_files}
    for secret in (person.one_time, NEW_PASSWORD):
        leaks = [where for where, text in seen.items() if secret.encode() in text]
        assert leaks == [], f"a password appears in {leaks}"
    # A wrong password as a real process: nonzero, one line, the password not in it.
    wrong = subprocess.run(
        [sys.executable, "-m", "labgate", *login_args(live_server)],
        input=b"Wrong-guess 99 for erin\n",
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert wrong.returncode == 1
    assert b"wrong user name or password" in wrong.stderr
    assert b"Wrong-guess" not in wrong.stdout + wrong.stderr
    assert b"Traceback" not in wrong.stderr
    assert b"Wrong-guess" not in caplog.text.encode()


# A real terminal (a pseudo-terminal) as a person has it: the password must not be echoed.
@pytest.mark.slow
def test_on_a_terminal_the_password_is_asked_without_echo(
    live_server: LiveServer, person: Person, store: LoginStore
) -> None:
    import pty
    import select

    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "labgate", *login_args(live_server)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, CONFIG_DIR_ENV: str(store.directory)},
        start_new_session=True,
    )
    os.close(slave)
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the other end closed
                    return

    try:
        for prompt, answer in (
            (b"password for erin", person.one_time),
            (b"new password: ", NEW_PASSWORD),
            (b"new password again: ", NEW_PASSWORD),
        ):
            read_until(prompt)
            assert prompt in seen, seen
            os.write(master, answer.encode() + b"\n")
        read_until(b"logged in as erin")
        assert process.wait(timeout=30) == 0, seen
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert b"logged in as erin" in seen
    assert person.one_time.encode() not in seen and NEW_PASSWORD.encode() not in seen


def test_no_password_on_standard_input_is_a_clear_error(
    live_server: LiveServer, person: Person, store: LoginStore
) -> None:
    code, _, err = invoke(*login_args(live_server), input="")
    assert code == 1 and "no password on standard input" in err
    assert not store.path.exists()
