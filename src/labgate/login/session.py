"""Logging in, calling the server as the logged-in person, and logging out.

`log_in` asks for the password through `Prompts` (the command line's no-echo prompt), and when
the server answers with a session that may only change its password (a one-time password, or one
the policy in force no longer accepts) asks for a new one, twice, and says what the server's
policy refused. Only a full session is saved.

`Authorised.call` refreshes the access token before use once 2/3 of its life has passed, and once
more if the server refuses it. A refresh the server will not take (logged out, the refresh token
already rotated by someone else, the login's idle or absolute end, the account disabled) becomes
`LoginEnded`, which tells the person to log in again: the client never retries a refused
refresh token, since presenting a rotated one again only confirms to the server that a copy is
in the wrong hands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from labgate.login.connection import Connection, server_url, trust
from labgate.login.errors import (
    InvalidServer,
    LoginEnded,
    LoginError,
    PasswordRefused,
    ServerAway,
    ServerRefused,
    WrongPassword,
)
from labgate.login.store import Login, LoginStore, Tokens

Clock = Callable[[], datetime]
# A person who mistypes the new password gets this many goes before the command gives up.
NEW_PASSWORD_TRIES = 3
# Refusals of a refresh that mean the login is over (401: not accepted or reused).
ENDED_STATUSES = frozenset({400, 401, 403})


def utc_now() -> datetime:
    return datetime.now(UTC)


class Prompts(Protocol):
    def password(self, prompt: str) -> str: ...

    def new_password(self) -> str:
        """Asked twice; PasswordRefused when the two entries differ."""
        ...

    def say(self, text: str) -> None: ...


def log_in(
    store: LoginStore,
    *,
    url: str,
    server_ca: Path | None,
    username: str,
    prompts: Prompts,
    now: Clock = utc_now,
) -> Login:
    """Log in (changing a one-time password first when the server asks) and save the tokens."""
    url = server_url(url)
    ca_pem = _read_ca(server_ca) if server_ca is not None else None
    with Connection(url, server_ca) as connection:
        # The server proves who it is before the password is even asked for.
        connection.call("GET", "/healthz")
        password = prompts.password(f"password for {username} at {url}: ")
        try:
            body = connection.call(
                "POST", "/api/v1/auth/login", {"username": username, "password": password}
            )
        except ServerRefused as refusal:
            if refusal.status == 401:
                raise WrongPassword(
                    f"{url} refused the password for {username!r} (wrong user name or password)"
                ) from None
            raise
        if body.get("password_change_required"):
            prompts.say(f"{url} asks {username} to choose a new password before going on.")
            body = _change_password(connection, prompts, str(body["access_token"]), password)
        del password
        tokens = Tokens.from_pair(body, now=now())
    _end_previous(store, url, now=now, prompts=prompts)
    kept = store.keep_ca(ca_pem) if ca_pem is not None else None
    login = Login(server=url, server_ca=kept, username=username, tokens=tokens)
    store.save(login)
    return login


def _read_ca(path: Path) -> bytes:
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise InvalidServer(f"--server-ca {path}: {error.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise InvalidServer(f"--server-ca {path} holds no PEM certificate")
    trust(path)  # refuses a file OpenSSL cannot load as CA certificates
    return pem


def _change_password(
    connection: Connection, prompts: Prompts, restricted_token: str, old_password: str
) -> Any:
    for _ in range(NEW_PASSWORD_TRIES):
        try:
            new_password = prompts.new_password()
        except PasswordRefused as refusal:
            prompts.say(str(refusal))
            continue
        try:
            return connection.call(
                "POST",
                "/api/v1/auth/password",
                {"old_password": old_password, "new_password": new_password},
                token=restricted_token,
            )
        except ServerRefused as refusal:
            if refusal.code not in ("password_rejected", "invalid_request"):
                raise
            prompts.say(f"the server refused that password: {refusal.message}")
    raise PasswordRefused(
        f"no new password accepted after {NEW_PASSWORD_TRIES} tries; the password is unchanged"
    )


def _end_previous(store: LoginStore, url: str, *, now: Clock, prompts: Prompts) -> None:
    """A login being replaced is ended on its server first, as `logout` would."""
    try:
        previous = store.read()
    except LoginError:
        return  # unreadable: replaced below, and nothing in it can be used anyway
    if previous is None:
        return
    try:
        Authorised(store, now=now).call("POST", "/api/v1/auth/logout")
    except LoginError as error:
        prompts.say(f"the earlier login at {previous.server} could not be ended there: {error}")


class Authorised:
    """Calls to the server as the saved login, the access token refreshed on use."""

    def __init__(self, store: LoginStore, *, now: Clock = utc_now) -> None:
        self.store = store
        self.now = now

    def login(self) -> Login:
        return self.fresh()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        login = self.fresh()
        with Connection(login.server, login.server_ca) as connection:
            try:
                return connection.call(method, path, body, token=login.tokens.access_token)
            except ServerRefused as refusal:
                if refusal.status != 401:
                    raise
                first = refusal
            # Refused before its time: revoked, or the account disabled. One refresh tells.
            login = self.fresh(refused=login.tokens.access_token, why=first)
            return connection.call(method, path, body, token=login.tokens.access_token)

    def fresh(self, *, refused: str | None = None, why: ServerRefused | None = None) -> Login:
        """The saved login, refreshed first if its access token is due (or was `refused`)."""
        with self.store.locked():
            login = self.store.require()
            now = self.now()
            if refused is None and now < login.tokens.access_due():
                return login
            if refused is not None and login.tokens.access_token != refused:
                return login  # another command refreshed meanwhile
            deadline = login.tokens.refresh_deadline()
            if deadline is not None and now >= deadline:
                raise LoginEnded(_ended(login, f"it ended at {deadline:%Y-%m-%d %H:%M:%S}Z"))
            with Connection(login.server, login.server_ca) as connection:
                try:
                    body = connection.call(
                        "POST",
                        "/api/v1/auth/refresh",
                        {"refresh_token": login.tokens.refresh_token},
                    )
                except ServerRefused as refusal:
                    if refusal.status not in ENDED_STATUSES:
                        raise
                    raise LoginEnded(_ended(login, _reason(refusal, why))) from None
            renewed = dataclasses.replace(login, tokens=Tokens.from_pair(body, now=self.now()))
            self.store.save(renewed)
            return renewed


def _reason(refusal: ServerRefused, first: ServerRefused | None) -> str:
    if refusal.code == "refresh_token_reused":
        why = (
            "its refresh token was presented again after it had been rotated (a copy of the "
            "login file in use elsewhere, or a refresh whose answer was lost), so the server "
            "ended it"
        )
    else:
        why = f"the server no longer takes it: {refusal.message or refusal.code}"
    if first is not None and first.message:
        why = f"{first.message}; {why}"
    return why


def _ended(login: Login, why: str) -> str:
    return (
        f"your login as {login.username} at {login.server} has ended ({why}); "
        f"log in again: labgate login {login.server}"
    )


def log_out(store: LoginStore, *, now: Clock = utc_now) -> Login | None:
    """End the saved login on the server and remove it here; the login ended (None: none).

    The local file goes in every case. When the server cannot be reached the login is still
    valid there until its refresh token's end, and ServerAway says so after removing the file.
    """
    login = store.read()
    if login is None:
        return None
    try:
        Authorised(store, now=now).call("POST", "/api/v1/auth/logout")
    except LoginEnded:
        pass  # already over on the server: nothing left to end
    except (ServerAway, ServerRefused) as error:
        store.remove()
        until = login.tokens.refresh_deadline()
        raise ServerAway(
            f"removed the login here, but could not end it at {login.server} ({error}); it "
            f"stays usable there until {until:%Y-%m-%d %H:%M}Z"
            if until
            else f"removed the login here, but could not end it at {login.server} ({error})"
        ) from None
    store.remove()
    return login
