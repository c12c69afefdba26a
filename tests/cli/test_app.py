import subprocess
import sys

from typer.testing import CliRunner

from labgate import __version__
from labgate.cli.app import app


def test_version_is_printed() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"labgate {__version__}"


def test_python_dash_m_runs_the_same_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "labgate", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    for sub in ("demo", "sim", "gateway", "pin", "ca", "server", "audit"):
        assert sub in proc.stdout
