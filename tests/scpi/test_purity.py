"""The scpi core is sans-IO: no module in it may import an event loop, a socket or TLS."""

import ast
import subprocess
import sys
from pathlib import Path

import labgate.scpi

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "trio", "anyio"}
PACKAGE = Path(labgate.scpi.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            roots.add("<dynamic __import__>")
    return roots


def test_the_package_has_the_modules_the_contract_names() -> None:
    names = {path.stem for path in MODULES}
    assert {"errors", "framing", "messages", "values", "names", "substitution", "access"} <= names


def test_no_scpi_module_imports_io_or_an_event_loop() -> None:
    offenders = {
        path.name: sorted(imported_roots(path) & (FORBIDDEN | {"<dynamic __import__>"}))
        for path in MODULES
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_scpi_imports_no_service_or_web_framework() -> None:
    for path in MODULES:
        roots = imported_roots(path)
        assert not roots & {"fastapi", "starlette", "uvicorn", "sqlalchemy", "httpx"}, path.name
        source = path.read_text()
        for service in ("labgate.gateway", "labgate.instrument", "labgate.control", "labgate.cli"):
            assert service not in source, (path.name, service)


def test_importing_every_scpi_module_loads_no_io_module_even_indirectly() -> None:
    modules = ", ".join(f"labgate.scpi.{path.stem}" for path in MODULES if path.stem != "__init__")
    code = (
        f"import sys, {modules}\n"
        f"print(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_import_scan_catches_each_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import asyncio.events\nfrom ssl import SSLContext\nimport os, socket\n")
    assert {"asyncio", "ssl", "socket"} <= imported_roots(module)
