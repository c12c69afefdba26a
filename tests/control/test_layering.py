"""The control server's domain modules stand apart from its HTTP edge (`labgate.control.http`):
they import neither the edge nor the web framework; routers call the domain, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import labgate.control

CONTROL = Path(labgate.control.__file__).parent
FORBIDDEN = ("labgate.control.http", "fastapi", "starlette", "uvicorn")
# Reads the socket peer and forwarded headers of a request; the address rules it applies are the
# domain's. Named here so that a second exception is a decision, not a drift.
KNOWN = {"addresses.py": {"starlette.requests"}}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_domain_modules_import_nothing_of_the_http_edge_or_the_web_framework() -> None:
    offending = {
        path.name: sorted(bad)
        for path in sorted([*CONTROL.glob("*.py"), *CONTROL.glob("acme/*.py")])
        if (bad := {n for n in _imports(path) if _forbidden(n)} - KNOWN.get(path.name, set()))
    }
    assert offending == {}


def test_the_check_sees_an_import_of_the_edge(tmp_path: Path) -> None:
    module = tmp_path / "drifted.py"
    module.write_text("from labgate.control.http.dependencies import SessionDep\n")
    assert any(_forbidden(n) for n in _imports(module))


def test_the_http_edge_holds_the_application_and_every_router() -> None:
    http = CONTROL / "http"
    assert (http / "app.py").is_file()
    assert (http / "routers").is_dir()
    assert not (CONTROL / "routers").exists()
    assert not (CONTROL / "app.py").exists()
