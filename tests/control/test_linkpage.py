"""The linking page (in the console): strict CSP, no inline script or style, COOP relaxed on
this page only; `/link` (where a device's code points) leads to it."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from .conftest import Api
from .console import Console


def _logged_in(client: TestClient, api: Api) -> Console:
    web = Console(client)
    web.login_fully("admin", api.admin_password)
    return web


def test_link_leads_to_the_consoles_linking_page_keeping_the_code(client: TestClient) -> None:
    response = client.get("/link", params={"user_code": "ABCD-EFGH"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/link?user_code=ABCD-EFGH"
    # Not logged in: the console's login page first, then back to the linking page.
    login = client.get(response.headers["location"], follow_redirects=False)
    assert (
        login.headers["location"] == "/console/login?next=%2Fconsole%2Flink%3Fuser_code%3DABCD-EFGH"
    )


def test_the_page_has_a_strict_policy_and_allows_popups_to_see_their_opener(
    client: TestClient, api: Api
) -> None:
    page = _logged_in(client, api).get("/console/link")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; script-src 'self';")
    assert "unsafe" not in policy and "*" not in policy
    assert page.headers["cross-origin-opener-policy"] == "same-origin-allow-popups"
    assert page.headers["x-frame-options"] == "DENY"
    html = page.text
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/link.js" defer>']
    assert "<style" not in html and " style=" not in html and "on" + "click" not in html


def test_every_other_response_keeps_same_origin(client: TestClient, api: Api) -> None:
    web = _logged_in(client, api)
    for path in (
        "/healthz",
        "/static/link.js",
        "/api/v1/discovery",
        "/console",
        "/console/devices",
    ):
        response = web.get(path)
        assert response.headers["cross-origin-opener-policy"] == "same-origin", path
        assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_user_code_in_the_query_is_escaped(client: TestClient, api: Api) -> None:
    page = _logged_in(client, api).get(
        "/console/link", params={"user_code": '"><script>x</script>'}
    )
    assert "<script>x" not in page.text
    assert "&#34;&gt;&lt;script&gt;" in page.text


def test_the_script_is_served_and_checks_the_origin_exactly(client: TestClient) -> None:
    script = client.get("/static/link.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "event.origin !== origin" in script.text and "event.source !== popup" in script.text
    assert "innerHTML" not in script.text and "localStorage" not in script.text
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/nothing.js").status_code == 404
