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

PAGES = (
    "/console",
    "/console/instruments",
    "/console/people",
    "/console/devices",
    "/console/devices?show=stale",
    "/console/link",
    "/console/certificates",
    "/console/audit",
    "/console/audit?decision=denied",
    "/console/audit/server",
    "/console/account",
    "/console/password",
)


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


def _seed(server: LiveServer, tmp_path: Path, make_csr: Any) -> dict[str, Any]:
    """Something on every page: people of each role, grants, devices (one stale, one never
    seen), certificates, and a gateway's shipped audit log."""
    from .test_console import _ship
    from .test_trail import write_sessions

    seeded: dict[str, Any] = {}
    with server.api() as api:
        tried = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": STRONG_PASSWORD}
        )
        admin = api.bearer(tried.json()["access_token"]) if tried.status_code == 200 else None
        admin = admin or api.admin()  # the one-time password becomes STRONG_PASSWORD
        for name, role in (("olga", "operator"), ("vera", "viewer"), ("ines", "auditor")):
            made = api.post("/api/v1/users", headers=admin, json={"username": name, "role": role})
            seeded[name] = made.json()["one_time_password"]
        for who, instrument, level in (
            ("labgate:user:olga", "qs5-bench3", "Controller"),
            ("labgate:user:vera", "qs5-bench3", "Observer"),
            ("labgate:user:olga", "*", "Observer"),
        ):
            body = {"principal": who, "instrument": instrument, "level": level}
            assert api.post("/api/v1/grants", headers=admin, json=body).status_code == 201
        for n in range(3):
            api.create_device(admin, f"bench-{n}")
        _, csr = make_csr("admin")
        issued = api.post("/api/v1/certificates", headers=admin, json={"csr_pem": csr})
        seeded["serial"] = issued.json()["serial"]
    _ship(server.settings, write_sessions(tmp_path / "audit.jsonl", 12))
    return seeded


def test_first_login_forces_the_change_then_every_page_loads_cleanly(
    tab: Tab, live_server: LiveServer, tmp_path: Path, make_csr: Any
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
    _seed(live_server, tmp_path, make_csr)
    for path in PAGES:
        response = tab.go(path)
        assert response.status == 200, path
        tab.shot(re.sub(r"\W+", "-", path.strip("/")) or "home")
    tab.go("/console")
    assert tab.page.locator(".cards .card").count() >= 4
    assert tab.violations() == []
    # Every read page is whole without JavaScript: the same session in a script-less context.
    plain = tab.page.context.browser.new_context(
        ignore_https_errors=True,
        java_script_enabled=False,
        storage_state=tab.context.storage_state(),
    )
    quiet = plain.new_page()
    quiet.goto(tab.url + "/console/devices")
    assert quiet.locator("#device-list tbody tr").count() == 3
    quiet.goto(tab.url + "/console/audit?decision=denied")
    assert quiet.locator("#audit-records tbody tr").count() > 0
    plain.close()

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


def test_the_forms_work_in_the_browser(
    tab: Tab, live_server: LiveServer, tmp_path: Path, make_csr: Any
) -> None:
    seeded = _seed(live_server, tmp_path, make_csr)
    tab.login("admin", STRONG_PASSWORD)
    page = tab.page
    # People: create, and the one-time password is on the page once.
    tab.go("/console/people")
    page.fill("#create-person input[name=username]", "nora")
    page.select_option("#create-person select[name=role]", "operator")
    tab.submit("#create-person button")
    one_time = page.text_content("#one-time-password") or ""
    assert len(one_time) >= 30
    tab.shot("people-created")
    tab.go("/console/people")
    assert one_time not in page.content()
    # Grants: add, lower, remove.
    tab.go("/console/instruments")
    page.fill("#add-grant input[name=principal]", "labgate:user:nora")
    page.fill("#add-grant input[name=instrument]", "qs6-bench1")
    page.select_option("#add-grant select[name=level]", "Controller")
    tab.submit("#add-grant button")
    section = page.locator('section[data-instrument="qs6-bench1"]')
    assert "Controller" in (section.text_content() or "")
    section.locator("select[name=level]").select_option("Guest")
    tab.submit('section[data-instrument="qs6-bench1"] form[action$="/level"] button')
    assert "Guest" in (
        page.locator('section[data-instrument="qs6-bench1"] td').nth(1).text_content() or ""
    )
    tab.shot("instruments")
    tab.submit('section[data-instrument="qs6-bench1"] form[action$="/remove"] button')
    assert page.locator('section[data-instrument="qs6-bench1"]').count() == 0
    # Certificates: revoking needs the confirmation (the browser will not send the form without
    # it), then a reason.
    tab.go("/console/certificates?status=valid")
    row = f'tr[data-serial="{seeded["serial"]}"]'
    page.select_option(f"{row} select[name=reason]", "superseded")
    page.click(f"{row} button")  # unticked: the browser keeps the form
    assert "/revoke" not in page.url
    page.check(f"{row} input[name=confirm]")
    tab.submit(f"{row} button")
    assert "revoked" in (page.text_content(".notice") or "")
    tab.go("/console/certificates?status=revoked")
    assert "superseded" in (page.text_content(row) or "")
    tab.shot("certificates")
    # The audit trail: filters in the form give the API's answer.
    tab.go("/console/audit")
    page.select_option("#audit-filters select[name=decision]", "denied")
    page.fill("#audit-filters input[name=identity]", "labgate:user:bob")
    tab.submit("#audit-filters button")
    shown = [page.locator("#audit-records tbody tr").nth(i).get_attribute("data-record")
             for i in range(page.locator("#audit-records tbody tr").count())]  # fmt: skip
    tab.shot("audit-filtered")
    with live_server.api() as api:
        admin = api.bearer(api.login("admin", STRONG_PASSWORD)["access_token"])
        wanted = api.get(
            "/api/v1/audit/records",
            headers=admin,
            params={"decision": "denied", "identity": "labgate:user:bob"},
        ).json()["records"]
    assert shown == [str(r["id"]) for r in wanted] and shown
    # Disabling a person: one click, and the page lists what ended.
    tab.go("/console/people")
    tab.submit('tr[data-user="olga"] form[action$="/disable"] button')
    assert "olga is disabled" in (page.text_content("h1") or "")
    assert "qs5-bench3 (Controller)" in (page.text_content("#revoked") or "")
    tab.shot("offboarded")
    assert tab.violations() == []


def test_a_viewer_sees_no_admin_control_and_cannot_post_one(
    tab: Tab, live_server: LiveServer, tmp_path: Path, make_csr: Any
) -> None:
    seeded = _seed(live_server, tmp_path, make_csr)
    tab.login("vera", seeded["vera"])
    tab.change_password(seeded["vera"])
    for path in ("/console", "/console/instruments", "/console/devices", "/console/certificates"):
        tab.go(path)
        html = tab.page.content()
        assert "/console/people" not in html and "/console/grants" not in html, path
        assert "/console/audit" not in html, path
    tab.shot("viewer-instruments")
    assert tab.go("/console/people").status == 403
    assert tab.go("/console/audit").status == 403
    token = tab.page.locator("form.who input[name=csrf]").get_attribute("value")
    # The form posted by hand, with the viewer's own valid token and this origin, from the
    # browser's own cookie jar: refused, and nothing changed.
    for path, form in (
        ("/console/people", {"username": "mallory", "role": "admin"}),
        ("/console/grants", {"principal": "labgate:user:vera", "instrument": "*", "level": "Full"}),
        ("/console/people/1/disable", {}),
    ):
        answer = tab.context.request.post(
            tab.url + path, form={**form, "csrf": token}, headers={"Origin": tab.url}
        )
        assert answer.status == 403, (path, answer.status)
    # Without the token, even the viewer's own logout is refused.
    assert (
        tab.context.request.post(
            tab.url + "/console/logout", form={}, headers={"Origin": tab.url}
        ).status
        == 403
    )
    with live_server.api() as api:
        admin = api.bearer(api.login("admin", STRONG_PASSWORD)["access_token"])
        names = [u["username"] for u in api.get("/api/v1/users", headers=admin).json()]
        assert "mallory" not in names
        assert not [u for u in api.get("/api/v1/users", headers=admin).json() if u["disabled"]]
    assert tab.violations() == []


def test_idle_and_absolute_timeouts_end_the_session_in_the_browser(
    browser: Any, settings: Any, clock: Any, shots: Path
) -> None:
    from labgate.control.http.serving import run_in_thread

    short = settings.model_copy(update={"console_idle_seconds": 30, "console_session_seconds": 90})
    with run_in_thread(short, clock=clock) as running:
        server = LiveServer(url=running.url, settings=short)
        with server.api() as api:
            api.admin_tokens()
        tab = Tab(browser, server, shots)
        tab.login("admin", STRONG_PASSWORD)
        assert tab.page.url.endswith("/console")
        clock.advance(31)  # idle past 30 s
        tab.go("/console/devices")
        assert "/console/login?next=%2Fconsole%2Fdevices" in tab.page.url
        tab.shot("timed-out")
        tab.login("admin", STRONG_PASSWORD)
        for _ in range(3):  # busy, never idle 30 s, but 90 s after login it ends
            clock.advance(25)
            assert tab.go("/console").url.endswith("/console")
        clock.advance(16)
        tab.go("/console")
        assert "/console/login" in tab.page.url
        assert tab.violations() == []
        tab.close()
