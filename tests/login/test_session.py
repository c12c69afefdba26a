"""Logging in, refreshing on use and logging out against the real control server on loopback."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.control.conftest import Clock, LiveServer
from tests.login.conftest import NEW_PASSWORD, Answers, Person

from labgate.login.errors import (
    LoginEnded,
    NotLoggedIn,
    PasswordRefused,
    UntrustedServer,
    WrongPassword,
)
from labgate.login.session import Authorised, log_in, log_out
from labgate.login.store import LoginStore
from labgate.pki.authority import CertificateAuthority


def first_login(store: LoginStore, live_server: LiveServer, person: Person, **kw: Any) -> Any:
    answers = Answers(person.one_time, NEW_PASSWORD, NEW_PASSWORD)
    login = log_in(
        store,
        url=live_server.url,
        server_ca=live_server.root,
        username=person.username,
        prompts=answers,
        **kw,
    )
    return login, answers


def test_a_first_login_changes_the_one_time_password_and_keeps_a_full_session(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    login, answers = first_login(store, live_server, person)
    assert answers.answers == []  # the password, then the new one twice
    assert any("new password" in s for s in answers.said)
    assert login.tokens.password_change_required is False
    me = Authorised(store).call("GET", "/api/v1/me")
    assert me["identity"] == "labgate:user:erin"
    # The one-time password no longer works; the new one does.
    with live_server.api() as api:
        refused = api.post(
            "/api/v1/auth/login", json={"username": "erin", "password": person.one_time}
        )
        assert refused.status_code == 401
        assert api.login("erin", NEW_PASSWORD)["password_change_required"] is False


def test_the_token_file_is_0600_in_a_0700_directory_and_holds_no_password(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    first_login(store, live_server, person)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    for path in store.directory.iterdir():
        text = path.read_bytes()
        assert person.one_time.encode() not in text
        assert NEW_PASSWORD.encode() not in text
    # The server and its CA are remembered: the CA is a copy kept next to the tokens.
    login = store.require()
    assert login.server == live_server.url
    assert login.server_ca == store.ca_path
    assert store.ca_path.read_bytes() == live_server.root.read_bytes()
    assert "access_token" not in repr(login) and login.tokens.access_token not in repr(login)


def test_a_new_password_the_policy_refuses_is_said_and_asked_for_again(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    answers = Answers(person.one_time, "short", "short", "abc", "abd", NEW_PASSWORD, NEW_PASSWORD)
    log_in(
        store,
        url=live_server.url,
        server_ca=live_server.root,
        username="erin",
        prompts=answers,
    )
    policy = [s for s in answers.said if "refused that password" in s]
    assert len(policy) == 1 and "short" not in policy[0].split(":", 1)[0]
    assert "differ" in " ".join(answers.said)
    assert store.require().username == "erin"


def test_three_refused_new_passwords_end_the_login_without_saving_it(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    answers = Answers(person.one_time, "a", "a", "b", "b", "c", "c")
    with pytest.raises(PasswordRefused, match="after 3 tries"):
        log_in(
            store, url=live_server.url, server_ca=live_server.root, username="erin", prompts=answers
        )
    assert not store.path.exists()


def test_a_wrong_password_is_a_clear_error_that_does_not_repeat_it(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    guess = "not-erins-password-42"
    with pytest.raises(WrongPassword, match="wrong user name or password") as caught:
        log_in(
            store,
            url=live_server.url,
            server_ca=live_server.root,
            username="erin",
            prompts=Answers(guess),
        )
    assert guess not in str(caught.value) and guess not in repr(caught.value)
    assert not store.path.exists()


def test_a_server_whose_certificate_does_not_chain_to_server_ca_is_refused_before_the_password(
    store: LoginStore, live_server: LiveServer, person: Person, tmp_path: Path
) -> None:
    with CertificateAuthority.init(
        tmp_path / "other-ca", passphrase=None, unencrypted=True
    ) as other:
        (tmp_path / "other.crt").write_bytes(other.root_pem)
    answers = Answers(person.one_time)
    with pytest.raises(UntrustedServer, match="does not chain to"):
        log_in(
            store,
            url=live_server.url,
            server_ca=tmp_path / "other.crt",
            username="erin",
            prompts=answers,
        )
    assert answers.asked == []  # the password was never even asked for
    assert not store.path.exists()


def test_the_access_token_is_refreshed_on_use_once_two_thirds_of_its_life_are_gone(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    login, _ = first_login(store, live_server, person)
    late = login.tokens.access_expires_at - timedelta(seconds=1)
    Authorised(store, now=lambda: late).call("GET", "/api/v1/me")
    renewed = store.require()
    assert renewed.tokens.access_token != login.tokens.access_token
    assert renewed.tokens.refresh_token != login.tokens.refresh_token
    early = renewed.tokens.obtained_at + timedelta(seconds=1)
    Authorised(store, now=lambda: early).call("GET", "/api/v1/me")
    assert store.require().tokens.access_token == renewed.tokens.access_token  # not yet due


def test_a_refresh_token_presented_again_after_rotation_ends_the_login_with_log_in_again(
    store: LoginStore, live_server: LiveServer, person: Person, clock: Clock
) -> None:
    first_login(store, live_server, person)
    copy = store.path.read_bytes()  # a copy of the file, as a thief or a backup would have it
    rotated = Authorised(store).fresh(refused=store.require().tokens.access_token)
    clock.advance(60)  # past the server's replay grace
    store.path.write_bytes(copy)
    with pytest.raises(LoginEnded, match="log in again") as caught:
        Authorised(store).fresh(refused=store.require().tokens.access_token)
    assert "presented again" in str(caught.value)
    # The server ended the whole login: the rotated successor is useless too.
    with live_server.client() as http:
        answer = http.post(
            "/api/v1/auth/refresh", json={"refresh_token": rotated.tokens.refresh_token}
        )
        assert answer.status_code == 401
        me = http.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {rotated.tokens.access_token}"}
        )
        assert me.status_code == 401


def test_logout_ends_the_login_on_the_server_and_removes_the_file(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    login, _ = first_login(store, live_server, person)
    ended = log_out(store)
    assert ended is not None and ended.username == "erin"
    assert not store.path.exists()
    with live_server.client() as http:
        bearer = {"Authorization": f"Bearer {login.tokens.access_token}"}
        assert http.get("/api/v1/me", headers=bearer).status_code == 401
        answer = http.post(
            "/api/v1/auth/refresh", json={"refresh_token": login.tokens.refresh_token}
        )
        assert answer.status_code == 401
    with pytest.raises(NotLoggedIn):
        Authorised(store).call("GET", "/api/v1/me")
    assert log_out(store) is None


def test_a_login_ended_on_the_server_says_log_in_again_on_its_next_use(
    store: LoginStore, live_server: LiveServer, person: Person, admin: Any
) -> None:
    first_login(store, live_server, person)
    api, headers = admin
    assert api.post(f"/api/v1/users/{person.user_id}/disable", headers=headers).status_code == 200
    with pytest.raises(LoginEnded, match="log in again") as caught:
        Authorised(store).call("GET", "/api/v1/me")
    assert "disabled" in str(caught.value) or "revoked" in str(caught.value)


def test_an_http_url_is_refused_before_anything_is_sent(store: LoginStore) -> None:
    from labgate.login.errors import InvalidServer

    answers = Answers("never-sent")
    with pytest.raises(InvalidServer, match="https"):
        log_in(store, url="http://127.0.0.1:1", server_ca=None, username="x", prompts=answers)
    assert answers.asked == []


def test_a_server_that_is_away_is_said_so(store: LoginStore, unused_port: int) -> None:
    from labgate.login.errors import ServerAway

    with pytest.raises(ServerAway, match="cannot reach"):
        log_in(
            store,
            url=f"https://127.0.0.1:{unused_port}",
            server_ca=None,
            username="x",
            prompts=Answers("never-sent"),
        )


@pytest.fixture
def unused_port(free_port: Any) -> int:
    port: int = free_port()  # below the ephemeral range: no other worker is given it meanwhile
    return port


def test_logout_with_the_server_away_removes_the_file_and_says_the_login_is_still_valid_there(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    import dataclasses

    from labgate.login.errors import ServerAway

    login, _ = first_login(store, live_server, person)
    store.save(dataclasses.replace(login, server="https://127.0.0.1:9"))  # nothing listens
    with pytest.raises(ServerAway, match="stays usable there until"):
        log_out(store)
    assert not store.path.exists()


def test_commands_refreshing_at_once_take_turns_and_the_login_survives(
    store: LoginStore, live_server: LiveServer, person: Person
) -> None:
    import threading

    login, _ = first_login(store, live_server, person)
    due = login.tokens.access_expires_at  # past 2/3 of the access token's life: all refresh
    results: list[str] = []
    errors: list[BaseException] = []

    def use() -> None:
        try:
            results.append(Authorised(store, now=lambda: due).login().tokens.refresh_token)
        except BaseException as error:  # collected, asserted below
            errors.append(error)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    # One rotation, seen by all: the others waited on the lock and read what it wrote.
    assert len(set(results)) == 1 and results[0] != login.tokens.refresh_token
    with live_server.client() as http:  # exactly one refresh reached the server, no replays
        metrics = http.get("/metrics").text
    assert 'labgate_refreshes_total{outcome="rotated"} 1.0' in metrics
    assert 'outcome="grace"' not in metrics
    with live_server.client() as http:  # and the server did not take any of it for a reuse
        answer = http.post("/api/v1/auth/refresh", json={"refresh_token": results[0]})
        assert answer.status_code == 200, answer.text
