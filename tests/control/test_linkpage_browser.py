"""The console's linking page in a real browser (Debian's Chromium through Playwright): log in
(the console's login page, which `/link` leads to), see the device announcing from this address,
link it through the device's local page in a popup, and end with the device enrolled; with zero
Content-Security-Policy violations on the way.

The device side here is a stand-in written for this test (its local page and the agent's
requests); the real agent has its own browser test.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import LiveServer
from .linking import FakeAgent

LOCAL_HOST = "127.0.0.2"


def _local_page(server_origin: str, instance_id: str, secret: str, *, to_origin: str) -> bytes:
    # The stand-in agent page: posts the secret to its opener for `to_origin` only.
    return f"""<!doctype html><title>device</title><script>
    window.opener.postMessage({{instance_id: "{instance_id}", secret: "{secret}"}}, "{to_origin}");
    </script>""".encode()


@pytest.fixture
def local_page() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"body": b"", "hits": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["hits"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOCAL_HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["port"] = server.server_address[1]
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _browser() -> Any:
    playwright = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed")
    return playwright, executable


def _run_flow(
    live_server: LiveServer, local_page: dict[str, Any], make_csr: Any, *, to_origin: str | None
) -> tuple[str, list[str], FakeAgent, Any]:
    playwright, executable = _browser()
    with live_server.api() as api:
        api.create_user(api.admin(), "olga", "operator")
    http = live_server.client(timeout=30)
    agent = FakeAgent(http, local=f"{LOCAL_HOST}:{local_page['port']}")
    assert agent.announce().status_code == 201
    origin = live_server.url
    local_page["body"] = _local_page(
        origin, agent.instance_id, agent.secret, to_origin=to_origin or origin
    )
    outcome: dict[str, Any] = {}

    stop = threading.Event()

    def device_side() -> None:
        # As the real agent does: keep announcing every few seconds (the listing shows only
        # devices heard from lately, and a cold browser can take longer than that to start), and
        # ask for a verification in short long-polls until the browser side is done.
        response = None
        for _ in range(60):
            if stop.is_set():
                break
            agent.announce()
            response = agent.fetch(wait=2)
            if response.status_code == 200:
                break
        if response is None or response.status_code != 200:
            outcome["fetch"] = None if response is None else response.status_code
            return
        verification = response.json()
        if not agent.proof_ok(verification):
            outcome["refuse"] = agent.refuse(verification).status_code
            return
        _, csr = make_csr(verification["device_id"])
        outcome["complete"] = agent.complete(verification, csr)

    worker = threading.Thread(target=device_side, daemon=True)
    worker.start()
    console: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.on("console", lambda message: console.append(message.text))
        page.goto(f"{origin}/link")  # the console's login page first, then the linking page
        page.fill("input[name=username]", "olga")
        page.fill("input[name=password]", api.STRONG_PASSWORD)
        page.click("form.stack button[type=submit]")
        page.wait_for_selector("#devices li button", timeout=60_000)
        with page.expect_popup():
            page.click("#devices li button")
        if to_origin is None:
            # A locator, not wait_for_function: the page's CSP forbids the eval that needs.
            page.locator("#status", has_text="Linked").wait_for(timeout=30_000)
        else:
            page.wait_for_timeout(2000)
        status = page.text_content("#status") or ""
        browser.close()
    stop.set()
    worker.join(timeout=30)
    http.close()
    return status, console, agent, outcome


@pytest.mark.slow
def test_a_person_links_the_device_from_a_real_browser_with_no_csp_violation(
    live_server: LiveServer, local_page: dict[str, Any], make_csr: Any
) -> None:
    status, console, _, outcome = _run_flow(live_server, local_page, make_csr, to_origin=None)
    assert status.startswith("Linked"), status
    assert outcome["complete"].status_code == 201
    violations = [m for m in console if "Content Security Policy" in m]
    assert violations == []


@pytest.mark.slow
def test_a_secret_posted_for_another_origin_never_reaches_the_server(
    live_server: LiveServer, local_page: dict[str, Any], make_csr: Any
) -> None:
    # The device's page addressed its message to some other site: the browser does not deliver
    # it to our page, so nothing is posted and the agent is never asked.
    status, _, _agent, outcome = _run_flow(
        live_server, local_page, make_csr, to_origin="https://evil.example"
    )
    assert local_page["hits"] >= 1
    assert not status.startswith("Linked")
    assert outcome.get("fetch") == 204 or "complete" not in outcome


@pytest.mark.slow
def test_a_person_approves_a_code_from_the_page_after_seeing_the_device(
    live_server: LiveServer, make_csr: Any
) -> None:
    playwright, executable = _browser()
    with live_server.api() as api:
        api.create_user(api.admin(), "olga", "operator")
        asked = api.post(
            "/api/v1/device-codes",
            json={"model": "QS5", "serial": "272510042", "hostname": "bench-3"},
        ).json()
    console: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_context(ignore_https_errors=True).new_page()
        page.on("console", lambda message: console.append(message.text))
        page.goto(asked["verification_uri_complete"])
        page.fill("input[name=username]", "olga")
        page.fill("input[name=password]", api.STRONG_PASSWORD)
        page.click("form.stack button[type=submit]")
        page.locator("input[name=user_code]").wait_for(timeout=15_000)
        assert page.input_value("input[name=user_code]") == asked["user_code"]
        page.click("#code-form button[type=submit]")
        page.locator("#cd-serial", has_text="272510042").wait_for(timeout=15_000)
        assert page.text_content("#cd-model") == "QS5"
        assert page.text_content("#cd-public") == "127.0.0.1"
        page.click("#approve")
        page.locator(".notice", has_text="Approved").wait_for(timeout=15_000)
        browser.close()
    _, csr = make_csr(asked["device_id"])
    with live_server.client() as http:
        polled = http.post(
            "/api/v1/device-codes/token",
            json={
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "device_code": asked["device_code"],
                "csr_pem": csr,
            },
        )
    assert polled.status_code == 200, polled.text
    assert [m for m in console if "Content Security Policy" in m] == []
