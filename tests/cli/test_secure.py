"""`labgate secure`: switches edit the `[secure]` table only, the rest of the file byte for byte."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labgate.cli.app import app

BEFORE = """# the lab's gateway
[gateway]
cert = "gateway.crt"   # kept as written
audit_log = "audit.jsonl"

[secure]
pwd = true
client_networks = ["10.1.0.0/16"]

# grants follow
[[grant]]
identity = "labgate:user:alice"
instrument = "*"
level = "Controller"
"""


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["secure", *args])
    return result.exit_code, result.output


def test_switches_rewrite_only_the_secure_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BEFORE)
    path.chmod(0o640)
    assert _run("--config", str(path), "-pwd", "+fw") == (0, "fw full\n")
    after = path.read_text()
    head, _, rest = BEFORE.partition("[secure]")
    assert after.startswith(head)  # every byte before the table
    assert after.endswith(rest[rest.index("\n# grants follow") :])  # and after it
    table = tomllib.loads(after)["secure"]
    assert table == {"pwd": False, "fw": True, "full": True, "client_networks": ["10.1.0.0/16"]}
    assert path.stat().st_mode & 0o777 == 0o640
    assert _run("--config", str(path)) == (0, "fw full\n")
    assert _run("--config", str(path), "+all")[1] == "all\n"
    assert _run("--config", str(path), "-all")[1] == "none\n"
    # Each "-switch" is a switch, not a bundle of short options (-f -u -l -l).
    for switch, left in (("-full", "pwd fw"), ("-fw", "pwd full"), ("-pwd", "fw full")):
        _run("--config", str(path), "+all")
        assert _run("--config", str(path), switch)[1] == f"{left}\n"
    assert _run("--config", str(path), "+all", "-fw", "-pwd")[1] == "full\n"


def test_a_file_without_secure_says_none_and_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\naudit_log = "a.jsonl"')  # no final newline
    code, output = _run("--config", str(path))
    assert code == 0 and output.startswith("none\n")
    assert "keeps what it had" in output
    assert _run("--config", str(path), "full")[1] == "full\n"
    assert tomllib.loads(path.read_text())["secure"]["full"] is True
    assert path.read_text().startswith('[gateway]\naudit_log = "a.jsonl"\n')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gateway]\n[secure]\npwd = true\n[secure]\nfw = true\n", "not valid TOML"),
        ("secure.fw = true\n[gateway]\n", "the file is unchanged"),  # dotted, not a table
        ('[gateway]\n[secure]\nclient_networks = ["10.0.0.1/8"]\n', "is not a network"),
        ("[gateway\n", "not valid TOML"),
    ],
)
def test_a_file_it_cannot_edit_safely_is_left_unchanged(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    code, output = _run("--config", str(path), "+all")
    assert code == 1 and message in output, output
    assert path.read_text() == text


@pytest.mark.parametrize("bad", ["+scp", "firewall", "-"])
def test_an_unknown_switch_is_refused_by_name(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BEFORE)
    code, output = _run("--config", str(path), bad)
    assert code == 2 and repr(bad) in output
    assert path.read_text() == BEFORE


def test_config_is_required() -> None:
    code, output = _run("+all")
    assert code == 2 and "--config" in output
