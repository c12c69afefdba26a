"""`cert get --renew` against the real server, its time moved by the test: the login kept alive
between renewals, renewal at 2/3 of the certificate's life, the login's absolute end respected,
a server that is away retried with capped backoff, and SIGTERM ending a real process cleanly."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from tests.control.conftest import FAST_ARGON2, Api, Clock, LiveServer
from tests.login.conftest import NEW_PASSWORD, Answers, Person

from labgate.control.http.serving import run_in_thread
from labgate.control.provisioning import initialise
from labgate.control.settings import ControlSettings
from labgate.login.certificate import get_certificate
from labgate.login.errors import LoginEnded, ServerAway
from labgate.login.freshness import LAST_CHANCE, MAX_FAILURES, keep_fresh
from labgate.login.session import Authorised, log_in
from labgate.login.store import CONFIG_DIR_ENV, LoginStore

DAY = timedelta(days=1)


def logged_in(store: LoginStore, url: str, root: Path, person: Person, clock: Clock) -> Authorised:
    log_in(
        store,
        url=url,
        server_ca=root,
        username=person.username,
        prompts=Answers(person.one_time, NEW_PASSWORD, NEW_PASSWORD),
        now=clock,
    )
    return Authorised(store, now=clock)


class Waits:
    """`wait(seconds)` for the loop: time moves on at once, for the server too."""

    def __init__(self, clock: Clock, then: Callable[[Waits], bool] = lambda _: False) -> None:
        self.clock = clock
        self.seconds: list[float] = []
        self.then = then

    def __call__(self, seconds: float) -> bool:
        self.seconds.append(seconds)
        self.clock.advance(seconds)
        return self.then(self)


def test_with_the_defaults_the_login_is_kept_alive_and_the_file_renewed_before_it_ends(
    live_server: LiveServer, person: Person, store: LoginStore, clock: Clock, tmp_path: Path
) -> None:
    authorised = logged_in(store, live_server.url, live_server.root, person, clock)
    kept = get_certificate(authorised, tmp_path / "me.pem")
    end = store.require().tokens.session_expires_at
    assert end is not None and end - clock() < kept.not_after - kept.not_before
    said: list[str] = []
    waits = Waits(clock)
    with pytest.raises(LoginEnded, match="log in again") as caught:
        keep_fresh(authorised, kept, stop=threading.Event(), say=said.append, wait=waits)
    # Refreshes kept the login alive (each within the idle limit) until the renewal...
    idle = live_server.settings.user_refresh_in_force
    assert len(waits.seconds) > (end - kept.not_before) / timedelta(seconds=idle)
    assert max(waits.seconds) < idle
    # ... made just before the login's absolute end, with a new key.
    renewed = [s for s in said if s.startswith("renewed")]
    assert len(renewed) == 1
    assert end - LAST_CHANCE <= clock() < end
    assert (tmp_path / "me.pem").read_bytes() != b""
    assert "valid until" in str(caught.value)


@pytest.fixture
def long_login_settings(tmp_path: Path) -> ControlSettings:
    """A server whose logins may last three days (past a one-day certificate's renewal)."""
    settings = ControlSettings.load(
        tmp_path / "long", user_session_max_seconds=3 * 24 * 3600, **FAST_ARGON2
    )
    initialise(settings, config={})
    return settings


def person_on(url: str, root: Path, settings: ControlSettings) -> Person:
    import ssl

    import httpx

    api = Api(httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=root)), settings)
    with api:
        made = api.post("/api/v1/users", headers=api.admin(), json={"username": "erin"})
        assert made.status_code == 201, made.text
        return Person("erin", made.json()["one_time_password"], made.json()["user"]["id"])


def test_the_file_is_renewed_at_two_thirds_of_its_lifetime_with_a_new_key(
    long_login_settings: ControlSettings, store: LoginStore, clock: Clock, tmp_path: Path
) -> None:
    stop = threading.Event()
    with run_in_thread(long_login_settings, clock=clock) as server:
        person = person_on(server.url, server.ca_root, long_login_settings)
        authorised = logged_in(store, server.url, server.ca_root, person, clock)
        kept = get_certificate(authorised, tmp_path / "me.pem")
        first = (tmp_path / "me.pem").read_bytes()
        started = clock()

        def after(waits: Waits) -> bool:
            return (tmp_path / "me.pem").read_bytes() != first

        renewed = keep_fresh(
            authorised, kept, stop=stop, say=lambda _: None, wait=Waits(clock, after)
        )
    assert renewed.serial != kept.serial  # stopped at the wait after the renewal it made
    again = (tmp_path / "me.pem").read_bytes()
    assert (
        again != first
        and again.split(b"-----BEGIN PRIVATE")[1] != first.split(b"-----BEGIN PRIVATE")[1]
    )
    lifetime = kept.not_after - kept.not_before
    at = (started - kept.not_before) + (clock() - started)
    assert lifetime * (2 / 3 - 1 / 20) <= at <= lifetime * (2 / 3 + 1 / 20)


def test_a_server_that_is_away_is_retried_with_capped_backoff_until_it_is_back(
    long_login_settings: ControlSettings, store: LoginStore, clock: Clock, tmp_path: Path
) -> None:
    with ExitStack() as running:
        server = running.enter_context(run_in_thread(long_login_settings, clock=clock))
        person = person_on(server.url, server.ca_root, long_login_settings)
        authorised = logged_in(store, server.url, server.ca_root, person, clock)
        kept = get_certificate(authorised, tmp_path / "me.pem")
    # The server is down now. The loop retries; after ten failures it comes back on its port.
    said: list[str] = []
    failures = 10
    with ExitStack() as back:

        def then(waits: Waits) -> bool:
            if len(waits.seconds) == 2 * failures:
                back.enter_context(
                    run_in_thread(
                        long_login_settings, listen=f"127.0.0.1:{server.port}", clock=clock
                    )
                )
            return any(s.startswith("renewed") for s in said)

        waits = Waits(clock, then)
        keep_fresh(
            authorised,
            kept,
            stop=threading.Event(),
            say=said.append,
            wait=waits,
            rng=random.Random(7),
        )
    assert len([s for s in said if "cannot reach the server" in s]) == failures
    # Each pause is drawn below a ceiling that doubles from one second and stops at five minutes.
    pauses = waits.seconds[1 : 2 * failures : 2]
    assert all(0 < p <= min(300.0, 2.0**n) for n, p in enumerate(pauses)), pauses
    assert max(pauses) > 30 > min(pauses)
    # Back, the loop went on: the login refreshed and the file renewed at its time.
    assert any(s.startswith("renewed") for s in said)


@pytest.mark.parametrize("idle_left", [timedelta(days=1), timedelta(minutes=10)])
def test_the_retries_are_bounded_by_a_count_and_by_the_login_itself(
    live_server: LiveServer,
    person: Person,
    store: LoginStore,
    clock: Clock,
    tmp_path: Path,
    idle_left: timedelta,
) -> None:
    authorised = logged_in(store, live_server.url, live_server.root, person, clock)
    kept = get_certificate(authorised, tmp_path / "me.pem")
    login = store.require()
    tokens = login.tokens
    tokens = dataclasses.replace(tokens, refresh_expires_at=clock() + idle_left)
    # The server moved away: nothing listens at the address the login names now.
    store.save(dataclasses.replace(login, server="https://127.0.0.1:9", tokens=tokens))
    waits = Waits(clock)
    started = clock()
    with pytest.raises((LoginEnded, ServerAway)) as caught:
        keep_fresh(
            authorised,
            kept,
            stop=threading.Event(),
            say=lambda _: None,
            wait=waits,
            rng=random.Random(3),
        )
    if idle_left > timedelta(hours=12):  # the count ends it first
        assert isinstance(caught.value, ServerAway), caught.value
        assert f"gave up after {MAX_FAILURES} failed attempts" in str(caught.value)
        assert len(waits.seconds) == 2 * MAX_FAILURES - 1
    else:
        assert isinstance(caught.value, LoginEnded), caught.value
        assert "log in again" in str(caught.value)
        assert idle_left <= clock() - started < idle_left + timedelta(seconds=300)


def test_sigterm_ends_a_renewing_process_cleanly(
    live_server: LiveServer, person: Person, store: LoginStore, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from labgate.cli.app import app

    result = CliRunner().invoke(
        app,
        ["login", live_server.url, "--server-ca", str(live_server.root), "--user", "erin"],
        input=f"{person.one_time}\n{NEW_PASSWORD}\n{NEW_PASSWORD}\n",
    )
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "me.pem"
    process = subprocess.Popen(
        [sys.executable, "-m", "labgate", "cert", "get", "--renew", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, CONFIG_DIR_ENV: str(store.directory)},
    )
    try:
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert out.exists(), process.stderr.read() if process.stderr else ""
        time.sleep(0.3)
        assert process.poll() is None  # still renewing
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()
    assert b"stopped;" in stdout and b"Traceback" not in stderr
