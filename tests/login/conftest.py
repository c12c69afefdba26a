"""Fixtures for a person's login: the real control server on loopback (the control tests'
fixtures), a user with a one-time password made by the administrator through the API, and a
configuration directory of the test's own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.control.conftest import (  # noqa: F401 (fixtures)
    Api,
    LiveServer,
    clock,
    data_dir,
    database_url,
    live_server,
    postgres_database,
    settings,
)

from labgate.login.store import CONFIG_DIR_ENV, LoginStore

# Accepted by the server's enhanced policy (on by default): long, mixed classes, no common word.
NEW_PASSWORD = "Violet staple hammock 7 orbit!"


@dataclass
class Person:
    username: str
    one_time: str
    user_id: int


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "config" / "labgate"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(directory))
    return directory


@pytest.fixture
def warnings_said() -> list[str]:
    return []


@pytest.fixture
def store(config: Path, warnings_said: list[str]) -> LoginStore:
    return LoginStore(config, warn=warnings_said.append)


@pytest.fixture
def admin(live_server: LiveServer) -> Any:  # noqa: F811 (the fixture above)
    api = live_server.api()
    headers = api.admin()
    yield api, headers
    api.http.close()


@pytest.fixture
def make_person(admin: Any) -> Callable[..., Person]:
    api, headers = admin

    def make(username: str = "erin", role: str = "operator") -> Person:
        made = api.post("/api/v1/users", headers=headers, json={"username": username, "role": role})
        assert made.status_code == 201, made.text
        body = made.json()
        return Person(
            username=username, one_time=body["one_time_password"], user_id=body["user"]["id"]
        )

    return make


@pytest.fixture
def person(make_person: Callable[..., Person]) -> Person:
    return make_person()


class Answers:
    """Prompts answered from a list, as a person would type them; what was said is kept."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.said: list[str] = []
        self.asked: list[str] = []

    def password(self, prompt: str) -> str:
        self.asked.append(prompt)
        return self.answers.pop(0)

    def new_password(self) -> str:
        from labgate.login.errors import PasswordRefused

        first, second = self.answers.pop(0), self.answers.pop(0)
        self.asked.append("new password (twice)")
        if first != second:
            raise PasswordRefused("the two new passwords differ")
        return first

    def say(self, text: str) -> None:
        self.said.append(text)
