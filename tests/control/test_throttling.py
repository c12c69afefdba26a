"""Brute force from the attacker's side: growing delays, a lock that ends, spraying, the peer."""

from __future__ import annotations

from typing import Any

import pytest

WRONG = {"username": "admin", "password": "definitely not the password"}


@pytest.fixture(autouse=True)
def _time_moves_only_when_told(clock: Any) -> None:
    # The first delay is 1 s: on a loaded machine it could pass between two requests that must
    # both meet it. Here time moves by clock.advance alone.
    clock.freeze()


def test_failed_logins_get_growing_delays_with_retry_after(api: Any, clock: Any) -> None:
    for _ in range(5):  # the free failures
        assert api.post("/api/v1/auth/login", json=WRONG).status_code == 401
    assert api.post("/api/v1/auth/login", json=WRONG).status_code == 401  # 6th: counted
    throttled = api.post("/api/v1/auth/login", json=WRONG)
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) >= 1
    # While throttled, even the right password is not looked at.
    right = api.post("/api/v1/auth/login", json={**WRONG, "password": api.admin_password})
    assert right.status_code == 429
    clock.advance(2)
    assert api.login("admin", api.admin_password)["password_change_required"] is True


def test_account_lock_ends_by_itself_and_is_audited(api: Any, clock: Any) -> None:
    admin = api.admin()  # a full admin session, made before the attack
    api.post("/api/v1/users", headers=admin, json={"username": "victim", "role": "viewer"})
    attempt = {"username": "victim", "password": "guess number one two three"}
    for _ in range(100):
        clock.advance(15 * 60 + 1)  # wait out every delay: only the lock stops this attacker
        assert api.post("/api/v1/auth/login", json=attempt).status_code == 401
    locked = api.post("/api/v1/auth/login", json=attempt)
    assert locked.status_code == 423
    assert locked.json()["code"] == "account_locked"
    wait = int(locked.headers["Retry-After"])
    assert 0 < wait <= api.settings.lockout_seconds
    from labgate.control import audit
    from labgate.control.database import make_engine, session_factory

    engine = make_engine(api.settings.resolved_database_url, pool_size=1)
    with session_factory(engine)() as session:
        assert [e.subject for e in audit.events(session, kind="login.locked")] == [
            "labgate:user:victim"
        ]
    engine.dispose()
    clock.advance(wait)
    # The lock is over: guesses are judged again (and count again from zero).
    assert api.post("/api/v1/auth/login", json=attempt).status_code == 401


def test_one_anonymous_source_cannot_keep_the_only_admin_locked(
    api: Any, settings: Any, clock: Any
) -> None:
    """At the lowest threshold, an attacker on one address guesses as fast as it is let for a
    simulated day: the account is locked for a small part of that day, each lock ends, and the
    administrator, from their own address, gets in whenever it is not locked."""
    from fastapi.testclient import TestClient

    from labgate.control.http.app import create_app

    lowest = settings.model_copy(update={"lockout_threshold": 10})
    app = create_app(lowest, clock=clock)
    with TestClient(app, client=("198.51.100.7", 40000)) as attacker:
        owner = type(api)(attacker, lowest)
        owner_tokens = owner.admin_tokens()  # the admin's real password is now set
        assert owner_tokens["password_change_required"] is False
        guess = {"username": "admin", "password": "is it this one perhaps"}
        began, locked_for, locks, requests = clock(), 0.0, 0, 0
        while (clock() - began).total_seconds() < 24 * 3600 and requests < 600:
            requests += 1
            response = attacker.post("/api/v1/auth/login", json=guess)
            if response.status_code == 401:
                continue
            assert response.status_code in (423, 429), response.text
            wait = int(response.headers["Retry-After"])
            if response.status_code == 423:
                assert wait <= lowest.lockout_seconds
                locks += 1
                locked_for += wait
            clock.advance(wait)
        assert requests < 600  # the day ended: the attacker was made to wait, not refused forever
        elapsed = (clock() - began).total_seconds()
        assert locks >= 1
        print(f"one source, one day: {locks} locks, locked {locked_for / elapsed:.0%} of the time")
        assert locked_for / elapsed < 0.25, (locks, locked_for, elapsed)
        # And right now, whatever the attacker's state, a lock (if any) is one that ends.
        with TestClient(app, client=("192.0.2.44", 40000)) as own:
            response = own.post(
                "/api/v1/auth/login", json={"username": "admin", "password": owner.STRONG_PASSWORD}
            )
            if response.status_code == 423:
                clock.advance(int(response.headers["Retry-After"]))
                response = own.post(
                    "/api/v1/auth/login",
                    json={"username": "admin", "password": owner.STRONG_PASSWORD},
                )
            assert response.status_code == 200, response.text


def test_case_and_width_variants_of_a_name_count_as_that_name(api: Any) -> None:
    variants = ["admin", "ADMIN", "Admin", "\uff41\uff44\uff4d\uff49\uff4e", "aDmIn", "ADMIN"]
    for name in variants:  # 6 failures against one account, under 6 spellings: 5 are free
        response = api.post(
            "/api/v1/auth/login", json={"username": name, "password": "not the password at all"}
        )
        assert response.status_code == 401, name
    throttled = api.post(
        "/api/v1/auth/login",
        json={"username": "\uff21\uff24\uff2d\uff29\uff2e", "password": "x" * 20},
    )
    assert throttled.status_code == 429


def test_own_successful_login_does_not_reset_the_spraying_count(api: Any) -> None:
    """Password spraying: one guess per account, and now and then a login with the attacker's
    own account. The success must not give the address a fresh allowance."""
    admin = api.admin()
    created = api.post(
        "/api/v1/users", headers=admin, json={"username": "mallory", "role": "viewer"}
    )
    mallory = api.login_fully("mallory", created.json()["one_time_password"])
    assert mallory["password_change_required"] is False

    def spray(n: int) -> int:
        response = api.post(
            "/api/v1/auth/login",
            json={"username": f"colleague{n}", "password": "Summer2026 and autumn too"},
        )
        return int(response.status_code)

    # The admin's own earlier logins were successes from this address: no failures yet.
    assert [spray(n) for n in range(20)] == [401] * 20
    assert api.login("mallory", api.STRONG_PASSWORD)["access_token"]
    assert spray(20) == 401  # the 21st failure from this address is counted ...
    assert spray(21) == 429  # ... and now it must wait, own success or not


def test_ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    from labgate.control.throttling import LoginKeys, source_of

    assert source_of("2001:db8:1:2::1") == source_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("::ffff:192.0.2.1") == "192.0.2.1"
    assert LoginKeys.of("ADMIN", "192.0.2.1").pair == "pair:admin@192.0.2.1"


def test_address_throttle_ignores_x_forwarded_for(api: Any) -> None:
    # Spread guesses over many accounts and spoof a new forwarded address each time: the
    # socket peer is the same, so its counter still grows and throttles.
    statuses = []
    for n in range(22):
        response = api.post(
            "/api/v1/auth/login",
            json={"username": f"user{n}", "password": "spray password one two"},
            headers={"X-Forwarded-For": f"203.0.113.{n}", "X-Real-IP": f"198.51.100.{n}"},
        )
        statuses.append(response.status_code)
    assert statuses[:21] == [401] * 21
    assert statuses[21] == 429


def test_real_server_keys_on_the_socket_peer_not_forwarded_headers(live_server: Any) -> None:
    """Through uvicorn itself, which would read X-Forwarded-For from a loopback peer."""
    with live_server.api() as api:
        statuses = []
        for n in range(22):
            response = api.post(
                "/api/v1/auth/login",
                json={"username": f"user{n}", "password": "spray password one two"},
                headers={"X-Forwarded-For": f"203.0.113.{n}", "Forwarded": f"for=198.51.100.{n}"},
            )
            statuses.append(response.status_code)
    assert statuses[:21] == [401] * 21
    assert statuses[21] == 429


def test_a_stolen_session_cannot_guess_the_old_password_quickly(api: Any, clock: Any) -> None:
    """Whoever holds a session (not the password) guesses at the old password to change it."""
    headers = api.admin()
    statuses = []
    for n in range(8):
        response = api.post(
            "/api/v1/auth/password",
            headers=headers,
            json={"old_password": f"guess {n} of the old one", "new_password": "x" * 40},
        )
        statuses.append(response.status_code)
    assert statuses[:6] == [401] * 6  # five free, the sixth counted
    assert statuses[6:] == [429, 429]
    clock.advance(2)
    changed = api.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"old_password": api.STRONG_PASSWORD, "new_password": "a different long passphrase"},
    )
    assert changed.status_code == 200, changed.text


def test_a_name_that_grows_under_nfkc_is_throttled_not_a_server_error(api: Any) -> None:
    """U+FDFA is one character typed and 18 after NFKC: 64 of them are 1152 characters, more
    than any counter key may hold. They are one (impossible) name, counted like any other."""
    statuses = []
    for _ in range(7):
        response = api.post(
            "/api/v1/auth/login", json={"username": "\ufdfa" * 64, "password": "x" * 20}
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 6 + [429]


def test_a_spray_of_unknown_names_leaves_a_bounded_table(
    api: Any, settings: Any, clock: Any
) -> None:
    """Two sources spray fresh unknown names as fast as they are let, a day apart, three times:
    each source is capped by its own address counter, and a day's quiet counters are deleted by
    later failures, so the table holds one round's rows, not every round's. A known name's
    recent counter is kept and still throttles."""
    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from labgate.control.database import make_engine, session_factory
    from labgate.control.http.app import create_app
    from labgate.control.tables import FailedLogins

    engine = make_engine(api.settings.resolved_database_url, pool_size=1)

    def rows() -> set[str]:
        with session_factory(engine)() as session:
            return set(session.scalars(select(FailedLogins.key)))

    app = create_app(settings, clock=clock)
    sources = ("198.51.100.7", "203.0.113.9")
    per_source = 21  # ADDRESS_RULE's 20 free failures, then the first counted one
    sprayed = 0
    for _ in range(3):
        for source in sources:
            with TestClient(app, client=(source, 40000)) as attacker:
                for attempt in range(per_source + 5):
                    sprayed += 1
                    response = attacker.post(
                        "/api/v1/auth/login",
                        json={"username": f"nobody-{sprayed}", "password": "Spring2026 again"},
                    )
                    if attempt < per_source:
                        assert response.status_code == 401, response.text
                    else:  # capped: refused unseen, and nothing written
                        assert response.status_code == 429, response.text
                        assert f"account:nobody-{sprayed}" not in rows()
        clock.advance(24 * 3600 + 1)
    with session_factory(engine)() as session:
        count = session.scalar(select(func.count()).select_from(FailedLogins))
    one_round = len(sources) * (2 * per_source + 1)  # account and pair per name, one address
    assert count is not None and 0 < count <= one_round, (count, one_round, sprayed)

    # A known name, guessed from a third source: throttled as before, and its fresh counters
    # survive the purges that other failures make.
    with TestClient(app, client=("192.0.2.44", 40000)) as guesser:
        for _ in range(6):
            assert guesser.post("/api/v1/auth/login", json=WRONG).status_code == 401
        clock.advance(23 * 3600)
        with TestClient(app, client=("198.51.100.8", 40000)) as other:
            for n in range(3):  # failures elsewhere purge whatever is a day quiet
                other.post("/api/v1/auth/login", json={"username": f"x{n}", "password": "y" * 12})
        assert {"account:admin", "pair:admin@192.0.2.44"} <= rows()
        for _ in range(30):  # the pair counter still stands: its delays grow
            response = guesser.post("/api/v1/auth/login", json=WRONG)
            if response.status_code == 429:
                break
            assert response.status_code == 401
        assert response.status_code == 429
    engine.dispose()
