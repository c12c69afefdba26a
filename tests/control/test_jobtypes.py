"""The job type registry: every schema bounded, and the device's copy the same as the server's."""

from __future__ import annotations

import pytest

from labgate.agent.jobs.registry import builtin_types
from labgate.control.errors import InvalidInput
from labgate.control.jobtypes import JOB_TYPES, check_params, job_type, require_bounded


def test_the_agent_holds_its_own_copy_of_each_schema_and_they_agree() -> None:
    agent = builtin_types()
    assert set(agent) == set(JOB_TYPES)
    for name, server_type in JOB_TYPES.items():
        assert agent[name].schema == server_type.schema, name
        assert agent[name].schema is not server_type.schema


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {}}, "additionalProperties"),
        ({"type": "object", "additionalProperties": False,
          "properties": {"s": {"type": "string"}}}, "maxLength"),
        ({"type": "object", "additionalProperties": False,
          "properties": {"n": {"type": "integer", "minimum": 0}}}, "maximum"),
        ({"type": "object", "additionalProperties": False,
          "properties": {"a": {"type": "array", "items": {"enum": [1]}}}}, "maxItems"),
        ({"type": "object", "additionalProperties": False,
          "properties": {"x": {}}}, "not one a job parameter"),
        ({"type": "object", "additionalProperties": False, "properties": {"x": {"type": 7}}},
         "not a valid JSON Schema"),
    ],
)  # fmt: skip
def test_an_unbounded_schema_cannot_be_registered(schema: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        require_bounded(schema, where="t")


def test_every_registered_schema_is_bounded() -> None:
    for name, registered in JOB_TYPES.items():
        require_bounded(registered.schema, where=name)


def test_unknown_names_are_exact() -> None:
    for name in ("Report_Status", "report_status ", "report-status", "report_status\x00"):
        with pytest.raises(InvalidInput, match="unknown job type"):
            job_type(name)


def test_params_must_be_an_object() -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        check_params(JOB_TYPES["report_status"], ["x"])
