"""The real agent in a real browser: Debian's Chromium through Playwright (no browser download).

The server's linking page on https://127.0.0.1 opens the agent's local page on http://127.0.0.2
as a popup; the agent posts its secret to the server's origin; the page links the device. Every
console message of every page is collected and none may be a CSP violation. Then a page of
another origin (http://127.0.0.3) opens the same local page, listens for messages and tries a
fetch and a frame: it gets nothing.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AGENT_OPTIONS = ("--local-listen", "127.0.0.2:0", "--local-networks", "127.0.0.0/8")
PASSWORD = "violet staple hammock orbit quietly"


def chromium() -> tuple[Any, str]:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (make browser installs it as root)")
    return playwright, executable


def csp_violations(messages: list[str]) -> list[str]:
    return [m for m in messages if "Content Security Policy" in m or "Content-Security-Policy" in m]


def test_the_whole_link_in_a_browser_with_no_csp_violation(server: Any, start_agent: Any) -> None:
    playwright, executable = chromium()
    server.admin()  # the one-time password becomes PASSWORD
    agent = start_agent(*AGENT_OPTIONS)
    link_page = f"http://{agent.ready['local']}/link?instance_id={agent.ready['instance_id']}"
    secret_page = httpx.get(link_page, timeout=10).text  # what the popup will get
    console: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True)
        context.on("console", lambda message: console.append(message.text))
        page = context.new_page()
        page.goto(f"{server.url}/link")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("form.stack button[type=submit]")  # the console login /link leads to
        page.wait_for_selector("#devices li button", timeout=30_000)
        assert "qPCR-sim" in (page.text_content("#devices") or "")
        with page.expect_popup():
            page.click("#devices li button")
        page.locator("#status", has_text="Linked").wait_for(timeout=60_000)
        browser.close()
    status = agent.wait_for("linked")
    assert (agent.data / "device.pem").exists()
    assert status["device_id"]
    assert csp_violations(console) == []
    agent.stop()
    secret = secret_page.split('"secret": "', 1)[1].split('"', 1)[0]
    assert len(secret) == 43
    assert secret not in agent.stderr()


class EvilSite:
    """A page of another origin that knows the agent's page address and wants the secret."""

    def __init__(self, link_page: str) -> None:
        body = f"""<!doctype html><title>evil</title><body><script>
window.got = [];
window.addEventListener("message", (e) => window.got.push(String(e.origin) + " " +
  JSON.stringify(e.data)));
window.popup = window.open({link_page!r}, "x");
fetch({link_page!r}).then((r) => r.text()).then((t) => window.got.push("fetch " + t),
  (err) => {{ window.fetchFailed = true; }});
fetch({link_page!r}, {{mode: "no-cors"}}).then((r) => r.text()).then(
  (t) => {{ if (t) window.got.push("no-cors " + t); }}, () => {{}});
const frame = document.createElement("iframe");
frame.src = {link_page!r};
document.body.append(frame);
</script></body>""".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.3", 0), Handler)
        self.url = f"http://127.0.0.3:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def evil_site() -> Iterator[Any]:
    sites: list[EvilSite] = []

    def make(link_page: str) -> EvilSite:
        sites.append(EvilSite(link_page))
        return sites[-1]

    yield make
    for site in sites:
        site.close()


def test_a_page_of_another_origin_gets_no_secret(
    server: Any, start_agent: Any, evil_site: Any
) -> None:
    playwright, executable = chromium()
    agent = start_agent(*AGENT_OPTIONS)
    link_page = f"http://{agent.ready['local']}/link?instance_id={agent.ready['instance_id']}"
    site = evil_site(link_page)
    console: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.on("console", lambda message: console.append(message.text))
        page = context.new_page()
        page.goto(site.url)
        page.wait_for_function("window.fetchFailed === true", timeout=30_000)
        page.wait_for_timeout(3000)  # time for any message to arrive
        got = page.evaluate("window.got")
        popup_opened = page.evaluate("window.popup !== null")
        browser.close()
    assert popup_opened
    assert "reason=secret_handed_out" in agent.stderr()  # the page was served to the popup...
    assert got == []  # ...and the browser delivered its message to nobody but the server
    assert any("frame-ancestors" in m for m in console)  # the frame was refused
    assert agent.status()["state"] == "unlinked"
