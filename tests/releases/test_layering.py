"""labgate.releases is a core: no web framework, no database, no event loop, no service."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "asyncio",
    "anyio",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "labgate.control",
    "labgate.gateway",
    "labgate.agent",
    "labgate.cli",
)

PROBE = """
import json, sys
import labgate.releases.repository, labgate.releases.verification, labgate.releases.keyfiles
print(json.dumps(sorted(sys.modules)))
"""


def test_releases_core_imports_no_framework_database_or_event_loop() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    offending = [
        name for name in loaded if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert offending == []
