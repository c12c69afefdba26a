"""A bounded schemathesis run over /openapi.json, as an admin: no input may cause a server error."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from labgate.control.app import create_app

# Bounded: a few examples per operation keeps the whole run to seconds.
EXAMPLES_PER_OPERATION = 8


def test_no_input_causes_a_server_error(settings: Any, clock: Any, api: Any) -> None:
    headers = api.admin()
    app = create_app(settings, clock=clock)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        no_server_error()
    # The run really reached the application: every operation answered several times.
    samples = app.state.runtime.metrics.requests.collect()[0].samples
    answered = sum(s.value for s in samples if s.name.endswith("_total"))
    assert answered >= 3 * len(operations)
    assert not any(s.labels["status"].startswith("5") for s in samples)
