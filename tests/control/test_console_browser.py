"""The console in a real browser (Debian's Chromium through Playwright) against a real server on
loopback: every page loads with zero Content-Security-Policy violations, the forms work, the
cookies carry their attributes as the browser stored them, roles hold even for a form posted by
hand with its own valid token, and sessions end on time.

One browser per module; each test opens its own context (cookie jar). Screenshots of each page go
to the test's temporary directory (`LABGATE_SCREENSHOTS` names another), for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import STRONG_PASSWORD, LiveServer

pytestmark = pytest.mark.slow  # a real Chromium: a few seconds per test

PAGES = ("/console", "/console/account", "/console/password")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("LABGATE_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


class Tab:
    """One browser context and page, with the console messages it logged."""

    def __init__(self, browser: Any, server: LiveServer, shots: Path) -> None:
        self.context = browser.new_context(
            ignore_https_errors=True, viewport={"width": 1366, "height": 800}
        )
        self.page = self.context.new_page()
        self.messages: list[str] = []
        self.page.on("console", lambda message: self.messages.append(message.text))
        self.url = server.url
        self.shots = shots

    def go(self, path: str) -> Any:
        return self.page.goto(self.url + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def login(self, username: str, password: str) -> None:
        self.go("/console/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        self.submit("form.stack button[type=submit]")

    def submit(self, selector: str, page: Any = None) -> None:
        """Click a button that posts a form, and wait for the page it leads to."""
        page = page or self.page
        with page.expect_navigation():
            page.click(selector)

    def change_password(self, old: str, new: str = STRONG_PASSWORD) -> None:
        self.page.fill("input[name=old_password]", old)
        self.page.fill("input[name=new_password]", new)
        self.page.fill("input[name=repeat_password]", new)
        self.submit("form.stack button[type=submit]")

    def violations(self) -> list[str]:
        return [m for m in self.messages if "Content Security Policy" in m or "Refused" in m]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, live_server: LiveServer, shots: Path) -> Iterator[Tab]:
    opened = Tab(browser, live_server, shots)
    yield opened
    opened.close()


def test_first_login_forces_the_change_then_every_page_loads_cleanly(
    tab: Tab, live_server: LiveServer
) -> None:
    with live_server.api() as api:
        one_time = api.admin_password
    tab.login("admin", one_time)
    assert tab.page.url.endswith("/console/password")
    assert "one-time password" in (tab.page.text_content("main") or "")
    tab.shot("password-forced")
    tab.go("/console")  # any other page leads back to the change
    assert tab.page.url.endswith("/console/password")
    tab.change_password(one_time)
    assert tab.page.url.endswith("/console/account?notice=password-changed")
    for path in PAGES:
        response = tab.go(path)
        assert response.status == 200, path
        tab.shot(re.sub(r"\W+", "-", path.strip("/")) or "home")
    tab.go("/console")
    assert tab.page.locator(".cards .card").count() >= 4
    assert tab.violations() == []

    cookies = {c["name"]: c for c in tab.context.cookies()}
    session = cookies["__Host-labgate-session"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["path"] == "/" and session["domain"] == "127.0.0.1"
    assert "__Host-labgate-login" not in cookies  # spent at login

    tab.submit("form.who button")  # log out
    assert "/console/login" in tab.page.url
    tab.go("/console")
    assert "/console/login" in tab.page.url


def test_a_form_posted_from_another_origin_is_refused(
    tab: Tab, live_server: LiveServer, browser: Any, shots: Path
) -> None:
    with live_server.api() as api:
        api.admin_tokens()
    tab.login("admin", STRONG_PASSWORD)
    assert tab.page.url.endswith("/console")
    # Another site's page (here a data: URL, an opaque origin) posting the logout form, with the
    # browser's cookies: SameSite=Strict keeps the cookie home, and the Origin check refuses.
    attack = tab.context.new_page()
    attack.set_content(
        f'<form method="post" action="{live_server.url}/console/logout">'
        '<input name="csrf" value="guess"><button>go</button></form>'
    )
    tab.submit("button", attack)
    assert "Not done" in (attack.text_content("body") or "") or attack.url.endswith("/login")
    tab.go("/console")
    assert tab.page.url.endswith("/console")  # still logged in
