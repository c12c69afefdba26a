"""The web console over HTTP, from the attacker's side: cookies, CSRF tokens, the Origin check,
server-side sessions with idle and absolute timeouts, the forced password change, roles."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import labgate.control.http
from labgate.control import console as console_sessions
from labgate.control.http.app import create_app
from labgate.control.settings import ControlSettings
from labgate.control.transactions import unit_of_work
from labgate.posture.mode import PWD_IDLE_SECONDS, SecureConfig

from .conftest import STRONG_PASSWORD, Api, Clock
from .console import Console

TEMPLATES = Path(labgate.control.http.__file__).parent / "templates"


@pytest.fixture
def web(client: TestClient) -> Console:
    return Console(client)


@pytest.fixture
def admin_web(web: Console, api: Api) -> Console:
    web.login_fully("admin", api.admin_password)
    api._admin_ready = True  # type: ignore[attr-defined]  # the password is now STRONG_PASSWORD
    return web


_OPENED: list[TestClient] = []


@pytest.fixture(autouse=True)
def _close_second_browsers() -> Iterator[None]:
    # Each `_second` app runs its lifespan (the jobs sweeper thread, the database engine): end it
    # with the test, or the thread outlives the test's database and keeps polling it.
    yield
    while _OPENED:
        _OPENED.pop().__exit__(None, None, None)


def _second(settings: ControlSettings, clock: Clock) -> Console:
    """Another browser on the same server (its own cookie jar)."""
    http = TestClient(create_app(settings, clock=clock), base_url="https://testserver")
    http.__enter__()
    _OPENED.append(http)
    return Console(http)


def test_a_page_without_a_session_leads_to_the_login_page(web: Console) -> None:
    response = web.get("/console/account?notice=password-changed")
    assert response.status_code == 303
    assert (
        response.headers["location"]
        == "/console/login?next=%2Fconsole%2Faccount%3Fnotice%3Dpassword-changed"
    )


def test_cookies_are_host_prefixed_secure_httponly_and_strict(web: Console, api: Api) -> None:
    page = web.get("/console/login")
    assert _cookie(page, "__Host-labgate-login") == {
        "httponly",
        "path=/",
        "samesite=strict",
        "secure",
        "max-age=3600",
    }
    logged_in = web.login("admin", api.admin_password)
    attributes = _cookie(logged_in, "__Host-labgate-session")
    assert attributes == {"httponly", "path=/", "samesite=strict", "secure"}  # no Domain


def _cookie(response: Any, name: str) -> set[str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return {part.strip().lower() for part in header.split(";")[1:]}
    raise AssertionError(f"no {name} cookie set: {response.headers.get_list('set-cookie')}")


def test_every_page_has_the_strict_policy_and_no_inline_script_or_style(
    admin_web: Console,
) -> None:
    for path in ("/console", "/console/account", "/console/password", "/console/login"):
        page = admin_web.get(path)
        assert page.status_code == 200, path
        policy = page.headers["content-security-policy"]
        assert policy.startswith("default-src 'none';") and "unsafe" not in policy
        assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy
        assert "base-uri 'none'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert "<style" not in page.text and " style=" not in page.text
        assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None


def test_no_template_holds_an_inline_script_style_or_handler() -> None:
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        assert "<style" not in text and " style=" not in text, template
        assert re.search(r"<script(?![^>]*\bsrc=)", text) is None, template
        assert re.search(r"\son[a-z]+=", text) is None, template
        assert "|safe" not in text and "autoescape false" not in text, template


def test_the_login_form_needs_its_token_and_this_origin(web: Console, api: Api) -> None:
    token = web.token("/console/login")
    form = {"username": "admin", "password": api.admin_password}
    assert web.post("/console/login", form, token="").status_code == 403
    assert web.post("/console/login", form, token="x" + token[1:]).status_code == 403
    evil = web.post("/console/login", form, token=token, origin="https://evil.example")
    assert evil.status_code == 403
    assert web.post("/console/login", form, token=token, origin=None).status_code == 403
    cross = web.post("/console/login", form, token=token, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert "__Host-labgate-session" not in web.http.cookies
    assert web.post("/console/login", form, token=token).status_code == 303


def test_a_wrong_password_shows_the_form_again_and_counts(web: Console, api: Api) -> None:
    refused = web.login("admin", "not the password at all")
    assert refused.status_code == 401
    assert "user name or password not accepted" in refused.text
    assert "__Host-labgate-session" not in web.http.cookies
    with unit_of_work(_sessions(web)) as session:
        kinds = [e.kind for e in _events(session)]
    assert "login.failed" in kinds


def _sessions(web: Console) -> Any:
    return web.http.app.state.runtime.sessions


def _events(session: Any) -> Any:
    from labgate.control import audit

    return audit.events(session)


def test_the_forced_password_change_comes_before_any_other_page(web: Console, api: Api) -> None:
    first = web.login("admin", api.admin_password)
    assert first.headers["location"] == "/console/password"
    for path in ("/console", "/console/account"):
        assert web.get(path).headers["location"] == "/console/password", path
    # A restricted session posting an action directly is sent to the change too.
    token = web.token("/console/password")
    assert "one-time password" in web.get("/console/password").text
    mismatch = web.post(
        "/console/password",
        {
            "old_password": api.admin_password,
            "new_password": STRONG_PASSWORD,
            "repeat_password": "x",
        },
        token=token,
    )
    assert mismatch.status_code == 422
    weak = web.post(
        "/console/password",
        {
            "old_password": api.admin_password,
            "new_password": "password",
            "repeat_password": "password",
        },
        token=token,
    )
    assert weak.status_code == 422 and "refused" in weak.text
    done = web.post(
        "/console/password",
        {
            "old_password": api.admin_password,
            "new_password": STRONG_PASSWORD,
            "repeat_password": STRONG_PASSWORD,
        },
        token=token,
    )
    assert done.status_code == 303
    assert web.get("/console").status_code == 200
    # The restricted session's cookie no longer opens anything: a new session replaced it.
    assert api.login("admin", STRONG_PASSWORD)["password_change_required"] is False


def test_a_post_without_its_csrf_token_or_from_elsewhere_is_refused(admin_web: Console) -> None:
    assert admin_web.post("/console/logout", {}, token="").status_code == 403
    assert admin_web.post("/console/logout", {}, token="forged").status_code == 403
    other = admin_web.post("/console/logout", {}, origin="https://evil.example")
    assert other.status_code == 403
    as_json = admin_web.http.post(
        "/console/logout",
        json={"csrf": admin_web.token()},
        headers={"Origin": admin_web.origin},
        follow_redirects=False,
    )
    assert as_json.status_code == 403
    twice = admin_web.http.post(
        "/console/logout",
        content=f"csrf={admin_web.token()}&csrf=x",
        headers={"Origin": admin_web.origin, "Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert twice.status_code == 403
    assert admin_web.get("/console").status_code == 200  # still logged in after all that


def test_another_sessions_token_does_not_pass(
    admin_web: Console, settings: ControlSettings, clock: Clock, api: Api
) -> None:
    other = _second(settings, clock)
    other.login("admin", STRONG_PASSWORD)
    stolen = other.token()
    assert admin_web.post("/console/logout", {}, token=stolen).status_code == 403


def test_logout_ends_the_session_on_the_server(admin_web: Console) -> None:
    cookie = admin_web.http.cookies["__Host-labgate-session"]
    assert admin_web.post("/console/logout", {}).status_code == 303
    admin_web.http.cookies.set("__Host-labgate-session", cookie)  # a copy kept by an attacker
    assert admin_web.get("/console").status_code == 303


def test_the_idle_timeout_ends_a_session(settings: ControlSettings, clock: Clock, api: Api) -> None:
    short = settings.model_copy(update={"console_idle_seconds": 60, "console_session_seconds": 600})
    web = Console(TestClient(create_app(short, clock=clock), base_url="https://testserver"))
    web.login_fully("admin", api.admin_password)
    clock.advance(50)
    assert web.get("/console").status_code == 200  # active: the idle count starts again
    clock.advance(50)
    assert web.get("/console").status_code == 200
    clock.advance(61)
    ended = web.get("/console")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/console/login")


def test_the_absolute_timeout_ends_a_busy_session(
    settings: ControlSettings, clock: Clock, api: Api
) -> None:
    short = settings.model_copy(update={"console_idle_seconds": 60, "console_session_seconds": 150})
    web = Console(TestClient(create_app(short, clock=clock), base_url="https://testserver"))
    web.login_fully("admin", api.admin_password)
    for _ in range(2):
        clock.advance(50)
        assert web.get("/console").status_code == 200
    clock.advance(51)
    assert web.get("/console").status_code == 303


def test_pwd_caps_the_idle_timeout(settings: ControlSettings) -> None:
    long_idle = settings.model_copy(update={"console_idle_seconds": 24 * 3600})
    assert long_idle.console_idle_in_force == 24 * 3600
    pwd = long_idle.model_copy(update={"secure": SecureConfig.from_table({"pwd": True})})
    assert pwd.console_idle_in_force == PWD_IDLE_SECONDS


def test_disabling_a_person_ends_their_console_session(
    admin_web: Console, api: Api, settings: ControlSettings, clock: Clock
) -> None:
    admin = api.admin()
    created = api.post("/api/v1/users", headers=admin, json={"username": "vera", "role": "viewer"})
    vera = _second(settings, clock)
    vera.login_fully("vera", created.json()["one_time_password"])
    assert vera.get("/console").status_code == 200
    user_id = created.json()["user"]["id"]
    assert api.post(f"/api/v1/users/{user_id}/disable", headers=admin).status_code == 200
    assert vera.get("/console").status_code == 303
    with unit_of_work(_sessions(admin_web)) as session:
        assert console_sessions.open_count(session, "labgate:user:vera") == 0


def test_a_next_path_never_leads_off_the_console(web: Console, api: Api) -> None:
    for bad in ("https://evil.example/", "//evil.example/console", "/console/../x", "/consolex"):
        token = web.token(f"/console/login?next={bad}")
        response = web.post(
            "/console/login",
            {"username": "admin", "password": api.admin_password, "next": bad},
            token=token,
        )
        # A one-time password leads to the change first; the `next` is dropped or kept safe.
        assert response.headers["location"] == "/console/password"
        web.http.cookies.clear()
    from labgate.control.http.console.entry import safe_next

    assert safe_next("https://evil.example/") == "/console"
    assert safe_next("//evil.example/console") == "/console"
    assert safe_next("/console//evil.example") == "/console"
    assert safe_next("/console/devices?show=stale") == "/console/devices?show=stale"


def test_the_dashboard_counts_certificates_ending_within_7_and_30_days(
    admin_web: Console, api: Api, clock: Clock, make_csr: Any
) -> None:
    admin = api.admin()
    _, csr = make_csr("admin")
    issued = api.post("/api/v1/certificates", headers=admin, json={"csr_pem": csr})
    assert issued.status_code == 201, issued.text
    page = admin_web.get("/console").text
    assert re.search(r'<span class="count">1</span> Certificates ending within 7 days', page)
    assert issued.json()["serial"] in page


def _person(api: Api, admin: dict[str, str], username: str, role: str) -> tuple[int, str]:
    created = api.post("/api/v1/users", headers=admin, json={"username": username, "role": role})
    assert created.status_code == 201, created.text
    return created.json()["user"]["id"], created.json()["one_time_password"]


def test_people_are_created_with_a_password_shown_once_and_offboarded_in_one_click(
    admin_web: Console, api: Api, make_csr: Any
) -> None:
    created = admin_web.post("/console/people", {"username": "Nora", "role": "operator"})
    assert created.status_code == 201
    one_time = re.search(r'id="one-time-password">([^<]+)<', created.text)
    assert one_time is not None
    assert one_time.group(1) not in admin_web.get("/console/people").text  # shown once only
    nora = api.bearer(api.login_fully("nora", one_time.group(1))["access_token"])
    _, csr = make_csr("nora")
    serial = api.post("/api/v1/certificates", headers=nora, json={"csr_pem": csr}).json()["serial"]
    admin = api.admin()
    grant = {"principal": "labgate:user:nora", "instrument": "qs5-bench3", "level": "Controller"}
    assert api.post("/api/v1/grants", headers=admin, json=grant).status_code == 201
    users = {u["username"]: u["id"] for u in api.get("/api/v1/users", headers=admin).json()}
    done = admin_web.post(f"/console/people/{users['nora']}/disable", {})
    assert done.status_code == 200
    assert serial in done.text and "qs5-bench3 (Controller)" in done.text
    assert "1 API refresh token revoked" in done.text
    assert api.get("/api/v1/me", headers=nora).status_code == 401
    listed = api.get("/api/v1/users", headers=admin).json()
    assert [u["disabled"] for u in listed if u["username"] == "nora"] == [True]
    bad = admin_web.post("/console/people", {"username": "bad name!", "role": "viewer"})
    assert bad.status_code == 422 and "username" in bad.text
    again = admin_web.post("/console/people", {"username": "NORA", "role": "viewer"})
    assert again.status_code == 409


def test_grants_are_added_lowered_and_removed(admin_web: Console, api: Api) -> None:
    added = admin_web.post(
        "/console/grants",
        {"principal": "labgate:user:Olga", "instrument": "qs5-bench3", "level": "full"},
    )
    assert added.status_code == 303
    admin = api.admin()
    (grant,) = api.get("/api/v1/grants", headers=admin).json()
    assert (grant["principal"], grant["level"]) == ("labgate:user:olga", "Full")
    page = admin_web.get("/console/instruments").text
    assert "labgate:user:olga" in page and 'data-instrument="qs5-bench3"' in page
    lowered = admin_web.post(f"/console/grants/{grant['id']}/level", {"level": "Observer"})
    assert lowered.status_code == 303
    assert api.get("/api/v1/grants", headers=admin).json()[0]["level"] == "Observer"
    assert (
        admin_web.post(f"/console/grants/{grant['id']}/level", {"level": "God"}).status_code == 422
    )
    assert admin_web.post(f"/console/grants/{grant['id']}/remove", {}).status_code == 303
    assert api.get("/api/v1/grants", headers=admin).json() == []
    assert admin_web.post(f"/console/grants/{grant['id']}/remove", {}).status_code == 404


def test_a_viewer_cannot_reach_an_admin_action_even_posting_with_its_own_token(
    admin_web: Console, api: Api, settings: ControlSettings, clock: Clock
) -> None:
    admin = api.admin()
    vera_id, vera_password = _person(api, admin, "vera", "viewer")
    target_id, _ = _person(api, admin, "tom", "operator")
    grant = {"principal": "labgate:user:tom", "instrument": "qs5", "level": "Observer"}
    grant_id = api.post("/api/v1/grants", headers=admin, json=grant).json()["id"]
    vera = _second(settings, clock)
    vera.login_fully("vera", vera_password)
    token = vera.token()  # vera's own, valid CSRF token
    page = vera.get("/console/instruments").text
    assert "/console/grants" not in page and "Disable" not in page  # no controls shown
    assert "/console/people" not in vera.get("/console").text
    assert vera.get("/console/people").status_code == 403
    attempts = {
        "/console/people": {"username": "mallory", "role": "admin"},
        f"/console/people/{target_id}/disable": {},
        f"/console/people/{target_id}/password-reset": {},
        f"/console/people/{vera_id}/password-reset": {},
        "/console/grants": {"principal": "labgate:user:vera", "instrument": "*", "level": "Full"},
        f"/console/grants/{grant_id}/level": {"level": "Full"},
        f"/console/grants/{grant_id}/remove": {},
    }
    for path, form in attempts.items():
        refused = vera.post(path, form, token=token)
        assert refused.status_code == 403, (path, refused.status_code)
    users = {u["username"]: u for u in api.get("/api/v1/users", headers=admin).json()}
    assert "mallory" not in users and not users["tom"]["disabled"]
    assert api.get("/api/v1/grants", headers=admin).json()[0]["level"] == "Observer"


def test_revoking_a_certificate_needs_a_reason_and_the_confirmation(
    admin_web: Console, api: Api, make_csr: Any
) -> None:
    admin = api.admin()
    _, csr = make_csr("admin")
    serial = api.post("/api/v1/certificates", headers=admin, json={"csr_pem": csr}).json()["serial"]
    page = admin_web.get("/console/certificates?status=valid&identity=labgate:user:admin")
    assert f'data-serial="{serial}"' in page.text
    unconfirmed = admin_web.post(f"/console/certificates/{serial}/revoke", {"reason": "superseded"})
    assert unconfirmed.status_code == 422 and "confirmation" in unconfirmed.text
    wrong = admin_web.post(
        f"/console/certificates/{serial}/revoke", {"reason": "because", "confirm": "yes"}
    )
    assert wrong.status_code == 422
    done = admin_web.post(
        f"/console/certificates/{serial}/revoke", {"reason": "superseded", "confirm": "yes"}
    )
    assert done.status_code == 303
    (listed,) = api.get("/api/v1/certificates", headers=admin).json()
    assert (listed["status"], listed["revocation_reason"]) == ("revoked", "superseded")
    assert admin_web.get("/console/certificates?identity=nobody").status_code == 422


def test_devices_are_listed_a_page_at_a_time_with_stale_ones_marked(
    admin_web: Console, api: Api, clock: Clock
) -> None:
    admin = api.admin()
    made = [api.create_device(admin, f"bench-{n:02d}")["device"]["id"] for n in range(3)]
    runtime = admin_web.http.app.state.runtime
    from labgate.control.tables import Device

    with unit_of_work(runtime.sessions) as session:
        session.get(Device, made[0]).last_seen_at = clock() - __import__("datetime").timedelta(
            hours=2
        )
        session.get(Device, made[1]).last_seen_at = clock()
    listing = admin_web.get("/console/devices?sort=name").text
    assert listing.index("bench-00") < listing.index("bench-01") < listing.index("bench-02")
    assert 'class="badge stale"' in listing and 'class="badge online"' in listing
    stale = admin_web.get("/console/devices?show=stale").text
    assert "bench-00" in stale and "bench-01" not in stale and "bench-02" not in stale
    never = admin_web.get("/console/devices?show=never").text
    assert "bench-02" in never and "bench-00" not in never
    descending = admin_web.get("/console/devices?sort=name&desc=true").text
    assert descending.index("bench-02") < descending.index("bench-00")
    unknown = admin_web.get("/console/devices?sort=password")
    assert unknown.status_code == 422 and unknown.headers["content-type"].startswith("text/html")
    assert "sort" in unknown.text
    job = api.post(
        "/api/v1/jobs",
        headers=admin,
        json={"type": "report_status", "device_id": made[1], "params": {}},
    )
    assert job.status_code == 201, job.text
    row = re.search(
        rf'data-device="{made[1]}">(.*?)</tr>', admin_web.get("/console/devices").text, re.S
    )
    assert row is not None and "<td>1</td>" in row.group(1)  # one open job
    revoked = admin_web.post(f"/console/devices/{made[2]}/revoke", {})
    assert revoked.status_code == 303
    assert api.get(f"/api/v1/devices/{made[2]}", headers=admin).json()["revoked"] is True


def test_linking_by_code_from_the_console(admin_web: Console, api: Api) -> None:
    asked = api.post(
        "/api/v1/device-codes", json={"model": "QS5", "serial": "272510042", "hostname": "b3"}
    ).json()
    shown = admin_web.post("/console/link/code", {"user_code": asked["user_code"]})
    assert shown.status_code == 200 and "272510042" in shown.text
    wrong = admin_web.post("/console/link/code", {"user_code": "BBBB-BBBB"})
    assert wrong.status_code == 404 and "code" in wrong.text
    decided = admin_web.post(
        "/console/link/code/decide", {"user_code": asked["user_code"], "approve": "yes"}
    )
    assert decided.headers["location"] == "/console/link?notice=code-approved"


def test_the_linking_script_routes_need_the_csrf_header(admin_web: Console) -> None:
    http = admin_web.http
    assert http.get("/console/link/discovery").status_code == 403
    token = admin_web.token()
    listed = http.get("/console/link/discovery", headers={"X-CSRF-Token": token})
    assert listed.status_code == 200 and listed.json()["devices"] == []
    body = {"instance_id": "A" * 22, "secret": "x" * 43}
    posted = http.post(f"/console/link/{'A' * 22}", json=body, headers={"X-CSRF-Token": token})
    assert posted.status_code == 403  # no Origin: refused before anything else
    other = http.post(
        f"/console/link/{'A' * 22}",
        json=body,
        headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
    )
    assert other.status_code == 403


@pytest.fixture
def trail_filled(settings: ControlSettings, tmp_path: Path) -> None:
    from .test_trail import write_sessions

    lines = write_sessions(tmp_path / "audit.jsonl", 30)
    _ship(settings, lines)


def _ship(settings: ControlSettings, lines: list[bytes]) -> None:
    import json
    from datetime import UTC, datetime

    from sqlalchemy.orm import sessionmaker

    from labgate.control import gatewaylogs
    from labgate.control.database import make_engine

    log_id = json.loads(lines[0])["log_id"]
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with unit_of_work(sessionmaker(engine)) as session:
            for start in range(0, len(lines), 50):
                gatewaylogs.receive(
                    session,
                    gateway="site-1",
                    log_id=log_id,
                    lines=lines[start : start + 50],
                    now=datetime.now(UTC),
                )
    finally:
        engine.dispose()


FILTER_CASES = (
    {},
    {"identity": "labgate:user:bob"},
    {"decision": "denied"},
    {"instrument": "qs6-bench1", "command": "runtitle?"},
    {"source": "::1", "event": "connect"},
    {"gateway": "site-1", "event": "refused"},
)


@pytest.mark.usefixtures("trail_filled")
def test_the_audit_filters_return_what_the_api_returns(admin_web: Console, api: Api) -> None:
    admin = api.admin()
    for case in FILTER_CASES:
        answer = api.get("/api/v1/audit/records", headers=admin, params={**case, "limit": 50})
        assert answer.status_code == 200, answer.text
        wanted = [str(r["id"]) for r in answer.json()["records"]]
        page = admin_web.get("/console/audit", params=case)
        assert page.status_code == 200, page.text
        assert re.findall(r'data-record="(\d+)"', page.text) == wanted, case
        assert wanted or case == {"source": "::1", "event": "connect"}
        exported = admin_web.get("/console/audit/export", params={**case, "format": "csv"})
        from_api = api.get("/api/v1/audit/export", headers=admin, params={**case, "format": "csv"})
        assert exported.status_code == 200 and exported.text == from_api.text, case
    # Times from the form's datetime-local fields are UTC.
    first = api.get("/api/v1/audit/records", headers=admin, params={"limit": 500}).json()
    times = sorted(r["at"] for r in first["records"])
    middle = times[len(times) // 2][:16]
    console_half = admin_web.get("/console/audit", params={"until": middle}).text
    api_half = api.get(
        "/api/v1/audit/records", headers=admin, params={"until": middle + "Z", "limit": 50}
    ).json()
    assert re.findall(r'data-record="(\d+)"', console_half) == [
        str(r["id"]) for r in api_half["records"]
    ]
    full = admin_web.get("/console/audit").text
    link = re.search(r'<a href="(/console/audit\?[^"]+)" id="older">', full)
    assert link is not None
    second = admin_web.get(link.group(1).replace("&amp;", "&")).text
    assert set(re.findall(r'data-record="(\d+)"', second)).isdisjoint(
        re.findall(r'data-record="(\d+)"', full)
    )
    with unit_of_work(_sessions(admin_web)) as session:
        kinds = [e.kind for e in _events(session)]
    assert "trail.viewed" in kinds and "trail.exported" in kinds


@pytest.mark.usefixtures("trail_filled")
def test_the_audit_trail_is_for_admins_and_auditors_only(
    admin_web: Console, api: Api, settings: ControlSettings, clock: Clock
) -> None:
    admin = api.admin()
    _, viewer_password = _person(api, admin, "vera", "viewer")
    _, auditor_password = _person(api, admin, "ines", "auditor")
    vera = _second(settings, clock)
    vera.login_fully("vera", viewer_password)
    assert vera.get("/console/audit").status_code == 403
    assert vera.get("/console/audit/export?format=csv").status_code == 403
    assert "/console/audit" not in vera.get("/console").text
    ines = _second(settings, clock)
    ines.login_fully("ines", auditor_password)
    assert 'href="/console/audit"' in ines.get("/console").text
    page = ines.get("/console/audit", params={"decision": "denied"})
    assert page.status_code == 200 and "data-record" in page.text
    session_link = re.search(r'href="(/console/audit/sessions/[^"]+)"', page.text)
    assert session_link is not None
    transcript = ines.get(session_link.group(1))
    assert transcript.status_code == 200 and "disconnect" in transcript.text
    assert ines.get("/console/people").status_code == 403
    assert ines.get("/console/audit", params={"decision": "maybe"}).status_code == 422


def test_the_control_servers_own_events_are_shown_filtered_and_their_viewing_recorded(
    admin_web: Console, api: Api, settings: ControlSettings, clock: Clock
) -> None:
    stranger = _second(settings, clock)
    assert stranger.login("nobody", "not a password at all").status_code == 401
    page = admin_web.get("/console/audit/server", params={"kind": "login.failed"})
    assert page.status_code == 200
    kinds = re.findall(r"<td>([a-z_.]+)</td><td class=\"mono small\">", page.text)
    assert kinds and set(kinds) == {"login.failed"}
    assert "labgate:user:nobody" in page.text
    everyone = admin_web.get("/console/audit/server").text
    assert "user.password_changed" in everyone and "login.failed" in everyone
    mine = admin_web.get("/console/audit/server", params={"subject": "labgate:user:admin"}).text
    assert "labgate:user:nobody" not in mine
    with unit_of_work(_sessions(admin_web)) as session:
        assert [e.kind for e in _events(session)].count("audit.viewed") == 3
    admin = api.admin()
    _, password = _person(api, admin, "vera", "viewer")
    vera = _second(settings, clock)
    vera.login_fully("vera", password)
    assert vera.get("/console/audit/server").status_code == 403
