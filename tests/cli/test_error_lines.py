"""Every command's user-facing error line starts the same way (`error: `), and keeps its status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labgate.cli.app import app


def cases(tmp: Path) -> list[tuple[list[str], int, str]]:
    broken = tmp / "broken.toml"
    broken.write_text("[gateway\nname = ")
    plain = tmp / "plain.toml"
    plain.write_text("[secure]\npwd = true\n")
    return [
        (["gateway", "--config", str(broken), "--log-level", "loud"], 2, "--log-level 'loud'"),
        (["gateway", "--config", str(broken)], 2, str(broken)),
        (["sim", "--secrets", str(broken)], 2, "broken.toml"),
        (["secure", "--config", str(plain), "+nothing"], 2, "nothing"),
        (["secure", "--config", str(plain), "--check", "+pwd"], 2, "--check takes no switches"),
        (["secure", "--config", str(broken)], 1, "is not valid TOML"),
        (["secure", "--config", str(plain), "--check"], 2, "is neither a gateway"),
        (["pin", "ftp://127.0.0.1:1"], 1, "ftp"),
        (["scan", "127.0.0.1:notaport"], 2, "notaport"),
        (["server", "migrate", "--data", str(tmp / "none")], 1, "holds no server"),
    ]


@pytest.mark.parametrize("index", range(10))
def test_each_command_says_error_first_and_keeps_its_status(index: int, tmp_path: Path) -> None:
    args, status, named = cases(tmp_path)[index]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == status, (args, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (args, result.stderr)
    assert lines[0].startswith("error: "), (args, lines[0])
    assert named in lines[0], (args, lines[0])
    assert not re.match(r"error: labgate [a-z]+( --[a-z]+)?:", lines[0])  # no second prefix
