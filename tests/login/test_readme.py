"""The README's two commands for a person, run as written (a real shell, the password on stdin,
the default configuration directory under a home of the test's own)."""

from __future__ import annotations

import os
import re
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.control.conftest import LiveServer
from tests.login.conftest import NEW_PASSWORD, Person

from labgate.login.store import CONFIG_DIR_ENV

README = Path(__file__).resolve().parents[2] / "README.md"


def person_commands() -> list[str]:
    text = README.read_text()
    start = text.index("### With a control server")
    section = text[start : text.index("\n##", start + 10)]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith(("labgate login", "labgate cert get")):
                commands.append(line)
    return commands


# Two real `labgate` processes in a real shell: the README's lines exactly as a person types them.
@pytest.mark.slow
def test_the_readme_login_and_cert_get_give_me_pem_in_the_default_place(
    live_server: LiveServer, make_person: Callable[..., Person], tmp_path: Path
) -> None:
    commands = person_commands()
    assert [c.split()[1] for c in commands] == ["login", "cert"]
    alice = make_person("alice")
    home = tmp_path / "home"
    home.mkdir()
    script = "set -euo pipefail\nlabgate() { " + sys.executable + ' -m labgate "$@"; }\n'
    script += "\n".join(
        c.replace("https://127.0.0.1:8443", live_server.url).replace(
            "srv/ca/root.crt", str(live_server.root)
        )
        for c in commands
    )
    env = {k: v for k, v in os.environ.items() if k not in (CONFIG_DIR_ENV, "XDG_CONFIG_HOME")}
    done = subprocess.run(
        ["bash", "-c", script],
        input=f"{alice.one_time}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n",
        capture_output=True,
        text=True,
        env={**env, "HOME": str(home)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pem = home / ".config" / "labgate" / "me.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    ssl.create_default_context(cafile=live_server.root).load_cert_chain(pem)
