"""A browser stand-in for the console tests: a cookie-keeping HTTP client that reads each form's
CSRF token from the page, as a browser posting that form would send it."""

from __future__ import annotations

import re
from typing import Any

from .conftest import STRONG_PASSWORD

TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


class Console:
    def __init__(self, http: Any, origin: str = "https://testserver") -> None:
        self.http = http
        self.origin = origin

    def get(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("follow_redirects", False)
        return self.http.get(path, **kwargs)

    def token(self, path: str = "/console/account") -> str:
        page = self.http.get(path)
        found = TOKEN.search(page.text)
        assert found is not None, f"no CSRF token on {path}: {page.status_code} {page.text[:200]}"
        return found.group(1)

    def post(
        self,
        path: str,
        data: dict[str, str],
        *,
        token: str | None = None,
        origin: str | None = "",
        **kwargs: Any,
    ) -> Any:
        """POST a form; `token` None takes it from the account page, "" leaves it out."""
        fields = dict(data)
        if token is None:
            token = self.token()
        if token:
            fields["csrf"] = token
        headers = dict(kwargs.pop("headers", {}))
        if origin is not None:
            headers["Origin"] = origin or self.origin
        kwargs.setdefault("follow_redirects", False)
        return self.http.post(path, data=fields, headers=headers, **kwargs)

    def login(self, username: str, password: str) -> Any:
        token = self.token("/console/login")
        return self.post(
            "/console/login", {"username": username, "password": password}, token=token
        )

    def login_fully(self, username: str, one_time: str) -> None:
        """Log in with a one-time password and change it through the forced change."""
        first = self.login(username, one_time)
        assert first.status_code == 303 and first.headers["location"] == "/console/password"
        changed = self.post(
            "/console/password",
            {
                "old_password": one_time,
                "new_password": STRONG_PASSWORD,
                "repeat_password": STRONG_PASSWORD,
            },
            token=self.token("/console/password"),
        )
        assert changed.status_code == 303, changed.text
