"""`labgate agent` and `labgate link` refuse bad input in one line naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labgate.cli.app import app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "root.crt"
    path.write_text("not used before the options are checked\n")
    return path


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--local-listen", "0.0.0.0:46001", "listens everywhere"),
        ("--local-listen", "[::]:46001", "listens everywhere"),
        ("--local-listen", "localhost:46001", "not an IP address"),
        ("--local-listen", "127.0.0.1", "not HOST:PORT"),
        ("--local-listen", "127.0.0.1:70000", "not HOST:PORT"),
        ("--local-networks", "10.0.0.1/8", "--local-networks"),
        ("--local-networks", "everything", "--local-networks"),
        ("--server", "ftp://server", "--server"),
        ("--server", "https://user:pw@server", "user name or password"),
        ("--model", "x" * 65, "--model"),
    ],
)
def test_agent_run_refuses_a_bad_option_naming_it(
    tmp_path: Path, ca_file: Path, option: str, value: str, named: str
) -> None:
    args = {"--server": "https://127.0.0.1:8443", option: value}
    argv = ["agent", "run", "--server-ca", str(ca_file), "--data", str(tmp_path / "a")]
    for name, given in args.items():
        argv += [name, given]
    code, output = run(*argv)
    assert code == 1
    assert output.startswith("error: ") and named in output
    assert "Traceback" not in output


def test_status_of_a_directory_never_used(tmp_path: Path) -> None:
    code, output = run("agent", "status", "--data", str(tmp_path / "none"), "--json")
    assert code == 0
    assert '"state": "never started"' in output


def test_unlink_of_an_unlinked_agent_says_so(tmp_path: Path) -> None:
    code, output = run("agent", "unlink", "--data", str(tmp_path / "none"))
    assert code == 1
    assert "not linked" in output and "Traceback" not in output
