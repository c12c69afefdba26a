"""A bounded schemathesis run over every route of /openapi.json: no input causes a server error.

It runs as an administrator whose session survives the whole run, on SQLite and on PostgreSQL
(the `settings` fixture), so the generated ids, names and texts reach the database. What would
end that session runs against a throwaway user instead: its own logout and password change use
the throwaway's session, and a generated user id that happens to be the admin's own (disable,
password reset, revoke sessions) is pointed at the throwaway.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from labgate.control.http.app import create_app

pytestmark = pytest.mark.slow  # about ten seconds per database

# Bounded and derandomised: a few examples per operation keeps each database's run to seconds.
EXAMPLES_PER_OPERATION = 12
SESSION_ENDING = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/password")}


@schemathesis.serializer("application/x-ndjson")
def _json_lines(ctx: Any, value: Any) -> bytes:
    """A gateway's audit batch: the generated text as the body's bytes."""
    return str(value).encode("utf-8", "surrogatepass")


def test_no_input_causes_a_server_error(settings: Any, clock: Any, api: Any) -> None:
    admin = api.admin()
    throwaway = api.create_user(admin, "throwaway", "viewer")
    ids = {u["username"]: u["id"] for u in api.get("/api/v1/users", headers=admin).json()}
    app = create_app(settings, clock=clock)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    statuses: Counter[int] = Counter()
    for operation in operations:
        key = (operation.method.upper(), operation.path)
        headers = throwaway if key in SESSION_ENDING else admin
        _fuzz(operation, headers, statuses, spare={ids["admin"]: ids["throwaway"]})
    # The run really reached the application as the administrator, start to end.
    assert sum(statuses.values()) >= 3 * len(operations)
    assert not [status for status in statuses if status >= 500]
    assert statuses[200] + statuses[201] >= len(operations), statuses
    assert api.get("/api/v1/me", headers=admin).status_code == 200


def _fuzz(operation: Any, headers: dict[str, str], statuses: Any, *, spare: dict[int, int]) -> None:
    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def no_server_error(case: Any) -> None:
        parameters = case.path_parameters or {}
        if parameters.get("user_id") in spare:
            parameters["user_id"] = spare[parameters["user_id"]]
        response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
        statuses[response.status_code] += 1

    no_server_error()
