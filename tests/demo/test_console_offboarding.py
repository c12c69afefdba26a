"""Offboarding from the web console, end to end: the real `labgate server`, `labgate sim` and a
real gateway taking its grants from the server, reached with the real qslib client, and the
console in a real Chromium. One click on "Disable" closes the person's live instrument session."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labgate.demo.stack import RunningDemo, running

from .test_offboarding import (
    CLOSE_WITHIN_S,
    admin_headers,
    api_client,
    closed_after,
    connected,
    enrol,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running(tmp_path_factory.mktemp("console-offboarding")) as stack:
        yield stack


def test_disabling_a_person_from_the_console_closes_their_qslib_session(
    demo: RunningDemo, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed")
    with api_client(demo) as api:
        admin = admin_headers(api, demo)
        gwen = enrol(api, admin, "gwen", tmp_path)
        hugo = enrol(api, admin, "hugo", tmp_path)
    session, bystander = connected(demo, gwen["pem"]), connected(demo, hugo["pem"])
    messages: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page: Any = browser.new_context(ignore_https_errors=True).new_page()
        page.on("console", lambda message: messages.append(message.text))
        page.goto(f"{demo.server['url']}/console/people")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", demo.admin_password.read_text().strip())
        with page.expect_navigation():
            page.click("form.stack button[type=submit]")
        assert page.url.endswith("/console/people"), page.url
        started = time.monotonic()
        with page.expect_navigation():
            page.click('tr[data-user="gwen"] form[action$="/disable"] button')
        elapsed = closed_after(session, started)
        listed = page.text_content("#revoked") or ""
        browser.close()
    assert "gwen is disabled" not in listed  # the list, not the heading
    assert "Controller" in listed and "privilegeWithdrawn" in listed
    assert bystander.run_command("DRAW?") in ("Open", "Closed")
    bystander.disconnect()
    assert elapsed < CLOSE_WITHIN_S
    assert [m for m in messages if "Content Security Policy" in m] == []
