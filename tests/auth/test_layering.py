"""labgate.auth is a core: no web framework, no database, no event loop, no service."""

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
    "psycopg",
    "labgate.control",
    "labgate.gateway",
    "labgate.instrument",
    "labgate.cli",
)

PROBE = """
import json, sys
import labgate.auth.codes, labgate.auth.keyring, labgate.auth.passwords, labgate.auth.policy
import labgate.auth.refresh, labgate.auth.throttle, labgate.auth.tokens
labgate.auth.policy.common_passwords()
print(json.dumps(sorted(sys.modules)))
"""


def test_auth_core_imports_no_framework_database_or_event_loop() -> None:
    # A fresh interpreter, so modules other tests imported do not count.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    offending = [
        name for name in loaded if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert offending == []
    assert "labgate.auth.tokens" in loaded
